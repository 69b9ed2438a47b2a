"""Which region serves a request: health, smoothed latency and backoff per region.

Sans-IO and thread-safe: the async client, the sync client and its probe thread
all share one :class:`Router`; nothing here waits or performs I/O.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from libs.client.models import RegionStatus
from libs.client.options import ClientOptions


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: ``initial * 2**(n-1)``, stretched, capped at ``cap``."""

    initial: float = 0.25
    cap: float = 30.0
    jitter: float = 0.5

    def delay(self, failures: int, draw: float) -> float:
        """Seconds to wait after the ``failures``-th failure in a row; ``draw`` is in [0, 1)."""
        base = self.initial * 2.0 ** min(max(failures - 1, 0), 62)
        return min(self.cap, base * (1.0 + self.jitter * draw))


@dataclass(slots=True)
class _Region:
    name: str
    url: str
    order: int
    latency: float | None = None
    failures: int = 0
    retry_at: float = 0.0
    last_error: str | None = None


class Router:
    """Region health and latency; chooses the order in which regions are tried.

    Reads go to the available region with the lowest smoothed latency. Regions
    not measured yet come first, in configured order: a client without probes
    sends its first reads to each region once, in configured order, and so
    learns every latency from real requests. A failed region backs off; once
    its backoff expires it is tried again in its place, and any success (a
    probe or a request) makes it healthy.
    """

    def __init__(
        self,
        urls: Mapping[str, str],
        options: ClientOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if not urls:
            raise ValueError("at least one region URL is needed")
        self._regions = {
            name: _Region(name, url.rstrip("/"), i) for i, (name, url) in enumerate(urls.items())
        }
        self._backoff = Backoff(
            options.backoff_initial, options.backoff_max, options.backoff_jitter
        )
        self._alpha = options.latency_smoothing
        self._clock = clock
        self._rng = rng or random.Random()
        # the sync client's probe thread updates the state while callers read it
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self._regions)

    def __contains__(self, region: object) -> bool:
        return region in self._regions

    def url(self, region: str) -> str:
        return self._regions[region].url

    def order(self) -> list[str]:
        """Regions a read may try now, nearest first (those in backoff are left out)."""
        now = self._clock()
        with self._lock:
            ready = [r for r in self._regions.values() if r.retry_at <= now]
            ready.sort(key=lambda r: (r.latency is not None, r.latency or 0.0, r.order))
            return [r.name for r in ready]

    def available(self, region: str) -> bool:
        """Whether ``region`` may be tried now: healthy, or its backoff has expired."""
        return self._regions[region].retry_at <= self._clock()

    def retry_in(self, region: str) -> float:
        return max(0.0, self._regions[region].retry_at - self._clock())

    def last_error(self, region: str) -> str | None:
        return self._regions[region].last_error

    def succeeded(self, region: str, latency: float | None) -> None:
        """A region answered; ``latency`` (seconds) feeds the EWMA when given."""
        with self._lock:
            state = self._regions[region]
            state.failures = 0
            state.retry_at = 0.0
            if latency is not None:
                old = state.latency
                state.latency = latency if old is None else old + self._alpha * (latency - old)

    def failed(self, region: str, reason: str) -> None:
        """A region did not answer usefully: back off, longer after each failure in a row."""
        now = self._clock()
        with self._lock:
            state = self._regions[region]
            state.last_error = reason
            if state.retry_at > now:
                # concurrent requests failing on the same outage count once
                return
            state.failures += 1
            state.retry_at = now + self._backoff.delay(state.failures, self._rng.random())

    def status(self) -> list[RegionStatus]:
        """Every region's state, in configured order."""
        now = self._clock()
        with self._lock:
            return [
                RegionStatus(
                    name=r.name,
                    url=r.url,
                    healthy=r.failures == 0,
                    latency=r.latency,
                    failures=r.failures,
                    retry_in=max(0.0, r.retry_at - now),
                    last_error=r.last_error,
                )
                for r in self._regions.values()
            ]
