"""Errors the ``mrcache`` command reports as one line on stderr and an exit code.

Configuration mistakes (bad ``--regions``, a bad config file) are
:class:`libs.common.errors.ConfigError` and exit 2, like argparse's usage
errors; everything else the command can diagnose is a :class:`CliError`.
"""

from __future__ import annotations


class CliError(Exception):
    """A failure with a message meant for the user, never a traceback."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
