"""Checking and signalling processes listed in ``cluster.json``.

``down`` and ``status`` did not start these processes, so a pid is trusted
only while the process holding it started before ``cluster.json`` was written:
after a crash or a reboot the number may belong to an unrelated process, which
must never be signalled. Linux only (``/proc``), like the rest of the platform.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

# /proc/stat's btime has whole-second resolution, so start times are as coarse.
_CLOCK_SLACK = 2.0


@functools.cache
def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise RuntimeError("/proc/stat has no btime line")


def running(pid: int, *, started_by: float) -> bool:
    """True when ``pid`` runs (zombies don't count) and started by ``started_by`` (epoch)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The command name in parentheses may contain spaces: split after the last ")".
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return False
    started = _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return started <= started_by + _CLOCK_SLACK


def send(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def wait_gone(pids: Iterable[int], *, started_by: float, timeout: float) -> set[int]:
    """Wait until none of ``pids`` runs; return those still running after ``timeout``."""
    left = set(pids)
    deadline = time.monotonic() + timeout
    while True:
        left = {pid for pid in left if running(pid, started_by=started_by)}
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)
