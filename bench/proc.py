"""What the platform's processes spent, read from ``/proc`` (Linux): CPU seconds, peak
RSS, and CPU by process kind (``invalidation_relay:us-east`` counts as
``invalidation_relay``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_all(pids: Mapping[str, int]) -> dict[str, float]:
    return {name: cpu_s(pid) for name, pid in pids.items()}


def by_kind(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds spent between two :func:`cpu_all` readings, summed per process kind."""
    spent: dict[str, float] = {}
    for name, seconds in after.items():
        kind = name.split(":", 1)[0]
        spent[kind] = spent.get(kind, 0.0) + seconds - before.get(name, seconds)
    return spent
