"""The meter's counts and how they are shown: per region and delay, home apart."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from services.meter.stats import (
    format_bound,
    format_nines,
    format_percent,
    fresh_ratio,
    nines_supported,
    stale_upper_bound,
)
from services.meter.verdict import KINDS, VERDICTS, Kind, Verdict

TABLE_HEADERS = (
    "REGION",
    "DELAY",
    "CHECKS",
    "FRESH",
    "STALE",
    "NOT CACHED",
    "ERRORS",
    "LATE",
    "FRESH %",
    "STALE ≤ (95%)",
    "NINES (95%)",
)
HOME_SUFFIX = " (home)"


def format_delay(delay: float) -> str:
    return f"{delay:g} s"


def delay_label(delay: float) -> str:
    """The ``delay`` label of the meter's metrics, as in ``1s``."""
    return f"{delay:g}s"


@dataclass
class Tally:
    """The checks of one cell (a region at a delay, its home keys apart) since the start."""

    counts: dict[Verdict, int] = field(default_factory=lambda: dict.fromkeys(VERDICTS, 0))
    by_kind: dict[Kind, dict[Verdict, int]] = field(
        default_factory=lambda: {k: dict.fromkeys(VERDICTS, 0) for k in KINDS}
    )
    # checks not made: could not start within max_lateness of their time, or shed
    late: int = 0
    # how long after its nominal time each check read the region (ms)
    lag_sum_ms: float = 0.0
    lag_max_ms: float = 0.0

    def add(self, verdict: Verdict, kind: Kind, lag_ms: float) -> None:
        self.counts[verdict] += 1
        self.by_kind[kind][verdict] += 1
        self.lag_sum_ms += lag_ms
        self.lag_max_ms = max(self.lag_max_ms, lag_ms)

    @property
    def checks(self) -> int:
        return sum(self.counts.values())


class Window:
    """Verdicts of the last ``seconds``, at most ``size`` of them (the gauges)."""

    def __init__(self, seconds: float, size: int) -> None:
        self.seconds = seconds
        self.size = size
        self._items: deque[tuple[float, Verdict]] = deque()
        self.counts: dict[Verdict, int] = dict.fromkeys(VERDICTS, 0)

    def add(self, now: float, verdict: Verdict) -> None:
        self._items.append((now, verdict))
        self.counts[verdict] += 1
        while len(self._items) > self.size:
            self._pop()
        self.prune(now)

    def prune(self, now: float) -> None:
        while self._items and self._items[0][0] < now - self.seconds:
            self._pop()

    def fresh_ratio(self) -> float | None:
        return fresh_ratio(self.counts["fresh"], self.counts["stale"])

    def error_ratio(self) -> float | None:
        return self.counts["error"] / len(self._items) if self._items else None

    def __len__(self) -> int:
        return len(self._items)

    def _pop(self) -> None:
        _, verdict = self._items.popleft()
        self.counts[verdict] -= 1


@dataclass(frozen=True)
class Row:
    region: str
    delay: float
    home: bool
    fresh: int
    stale: int
    not_cached: int
    errors: int
    late: int
    lag_mean_ms: float | None
    lag_max_ms: float
    by_kind: dict[str, dict[str, int]]
    window_ratio: float | None = None
    window_error_ratio: float | None = None

    @property
    def checks(self) -> int:
        return self.fresh + self.stale + self.not_cached + self.errors

    @property
    def served(self) -> int:
        return self.fresh + self.stale

    @property
    def label(self) -> str:
        return self.region + (HOME_SUFFIX if self.home else "")

    def cells(self) -> tuple[str, ...]:
        """One line of the printed table, in the order of :data:`TABLE_HEADERS`."""
        return (
            self.label,
            format_delay(self.delay),
            str(self.checks),
            str(self.fresh),
            str(self.stale),
            str(self.not_cached),
            str(self.errors),
            str(self.late),
            format_percent(self.fresh, self.stale),
            format_bound(self.stale, self.served),
            format_nines(self.stale, self.served),
        )

    def as_dict(self) -> dict[str, Any]:
        reads = self.served + self.not_cached
        return {
            "region": self.region,
            "home": self.home,
            "delay": self.delay,
            "checks": self.checks,
            "fresh": self.fresh,
            "stale": self.stale,
            "not_cached": self.not_cached,
            "errors": self.errors,
            "late": self.late,
            "fresh_ratio": fresh_ratio(self.fresh, self.stale),
            "fresh_percent": format_percent(self.fresh, self.stale),
            "stale_upper_bound": stale_upper_bound(self.stale, self.served),
            "nines": nines_supported(self.stale, self.served),
            # a client's read at this delay: a region with no copy fills from the home
            # (fresh), so this is the share of all reads that were stale
            "stale_of_reads": self.stale / reads if reads else None,
            "stale_of_reads_upper_bound": stale_upper_bound(self.stale, reads),
            "lag_mean_ms": self.lag_mean_ms,
            "lag_max_ms": self.lag_max_ms,
            "by_kind": self.by_kind,
            "window_fresh_ratio": self.window_ratio,
            "window_error_ratio": self.window_error_ratio,
        }


def row_of(
    region: str, delay: float, home: bool, tally: Tally, window: Window | None = None
) -> Row:
    checks = tally.checks
    return Row(
        region=region,
        delay=delay,
        home=home,
        fresh=tally.counts["fresh"],
        stale=tally.counts["stale"],
        not_cached=tally.counts["not_cached"],
        errors=tally.counts["error"],
        late=tally.late,
        lag_mean_ms=tally.lag_sum_ms / checks if checks else None,
        lag_max_ms=tally.lag_max_ms,
        by_kind={
            k: {str(verdict): n for verdict, n in v.items()}
            for k, v in tally.by_kind.items()
            if any(v.values())
        },
        window_ratio=window.fresh_ratio() if window is not None else None,
        window_error_ratio=window.error_ratio() if window is not None else None,
    )


@dataclass(frozen=True)
class Report:
    sample_rate: float
    delays: tuple[float, ...]
    # sampled events by kind
    sampled: dict[str, int]
    # checks dropped because max_pending were already waiting, or over the check budget
    overflow: int
    shed: int
    invalid_events: int
    # events that reached the broker more than a second after their write (an outbox
    # drained after an outage, say), and the longest such wait
    published_late: int
    publish_lag_max_ms: float
    pending: int
    rows: tuple[Row, ...]

    @property
    def sampled_events(self) -> int:
        return sum(self.sampled.values())

    @property
    def late(self) -> int:
        return sum(row.late for row in self.rows)

    @property
    def checks(self) -> int:
        return sum(row.checks for row in self.rows)

    def table_rows(self) -> list[tuple[str, ...]]:
        return [row.cells() for row in self.rows if row.checks or row.late or not row.home]

    def as_dict(self) -> dict[str, Any]:
        return {
            "sample_rate": self.sample_rate,
            "delays": list(self.delays),
            "sampled_events": self.sampled_events,
            "sampled": self.sampled,
            "skipped": {"late": self.late, "overflow": self.overflow, "shed": self.shed},
            "invalid_events": self.invalid_events,
            "published_late": self.published_late,
            "publish_lag_max_ms": self.publish_lag_max_ms,
            "pending": self.pending,
            "confidence": 0.95,
            "rows": [row.as_dict() for row in self.rows],
        }
