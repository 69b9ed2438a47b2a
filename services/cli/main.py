"""``mrcache``: start, inspect and stop a local multi-region platform.

``mrcache up`` runs in the foreground; ``mrcache status`` and ``mrcache down``
find it through ``<state-dir>/cluster.json``. Exit codes: 0 success, 1 failure
(nothing running, a process failed, a port in use), 2 bad arguments or config.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from libs.common.errors import ConfigError
from services.cli import down, status, up
from services.cli.errors import CliError

DEFAULT_STATE_DIR = Path(".mrcache")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mrcache`` console script."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "up":
            return up.run(
                config_file=args.config,
                regions=args.regions,
                base_port=args.base_port,
                state_dir=args.state_dir,
                ready_timeout=args.ready_timeout,
            )
        if args.command == "down":
            return down.run(state_dir=args.state_dir, timeout=args.timeout)
        return status.run(state_dir=args.state_dir)
    except ConfigError as exc:
        print(f"mrcache {args.command}: {exc.message}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"mrcache {args.command}: {exc.message}", file=sys.stderr)
        return exc.exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mrcache", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up_cmd = commands.add_parser("up", help="start a local platform in the foreground")
    up_cmd.add_argument("--config", type=Path, help="platform config file (TOML)")
    up_cmd.add_argument(
        "--regions",
        help="comma-separated regions, in port order "
        "(default: the config's [platform] regions, else us-east,eu-west,ap-south)",
    )
    up_cmd.add_argument(
        "--base-port", type=_port, default=8100, help="port of the first region (default 8100)"
    )
    up_cmd.add_argument(
        "--ready-timeout",
        type=_seconds,
        default=60.0,
        help="seconds the whole platform may take to get ready (default 60)",
    )

    down_cmd = commands.add_parser("down", help="stop the platform running in the state dir")
    down_cmd.add_argument(
        "--timeout",
        type=_seconds,
        default=30.0,
        help="seconds to wait before signalling leftover processes directly (default 30)",
    )

    commands.add_parser("status", help="show each region's health and each process")

    for command in commands.choices.values():
        command.add_argument(
            "--state-dir",
            type=Path,
            default=DEFAULT_STATE_DIR,
            help=f"where cluster.json, logs and Redis data live (default {DEFAULT_STATE_DIR})",
        )
    return parser


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not in 1..65535")
    return port


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0")
    return seconds


if __name__ == "__main__":
    sys.exit(main())
