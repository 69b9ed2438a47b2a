"""A circuit breaker per origin: stop calling an origin that keeps failing.

States and rules (the origin client depends on them)::

    closed ──(failure rate >= failure_rate over the last `window` s,
              with at least `min_requests` outcomes)──────────────> open
    open ────(`open_seconds` elapsed, checked lazily)─────────────> half_open
    half_open ─(`half_open_probes` probes all succeeded)──────────> closed
    half_open ─(any failure)──────────────────────────────────────> open

* ``allow()`` says whether a request may go out. Closed: always. Open: never.
  Half-open: only while probe slots remain, and each ``True`` consumes one.
* Every allowed request must end in ``record(success)`` or, when it ended
  without an outcome (cancelled, never sent), ``release()`` so its probe slot
  returns. A probe that never reports does not wedge the breaker: after
  another ``open_seconds`` in half-open with no slot left, the slots refill.
* Outcomes are counted in ``window / buckets`` wide time buckets, so memory is
  bounded whatever the request rate and the window slides by one bucket.
* Not thread-safe; made for one asyncio loop (no method awaits).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from libs.common.metrics import Metrics

BreakerState = Literal["closed", "open", "half_open"]

# values of the mrcache_origin_breaker_state gauge
STATE_GAUGE: dict[BreakerState, int] = {"closed": 0, "half_open": 1, "open": 2}

Clock = Callable[[], float]
Listener = Callable[[BreakerState, BreakerState], None]


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """When a breaker opens and how it probes its way back; see the module docstring."""

    window: float = 10.0
    min_requests: int = 10
    failure_rate: float = 0.5
    open_seconds: float = 5.0
    half_open_probes: int = 1
    buckets: int = 10

    def __post_init__(self) -> None:
        if not (self.window > 0 and math.isfinite(self.window)):
            raise ValueError("breaker window must be a positive number of seconds")
        if self.min_requests < 1:
            raise ValueError("breaker min_requests must be at least 1")
        if not 0 < self.failure_rate <= 1:
            raise ValueError("breaker failure_rate must be in (0, 1]")
        if not (self.open_seconds >= 0 and math.isfinite(self.open_seconds)):
            raise ValueError("breaker open_seconds must be a non-negative number of seconds")
        if self.half_open_probes < 1:
            raise ValueError("breaker half_open_probes must be at least 1")
        if self.buckets < 1:
            raise ValueError("breaker buckets must be at least 1")


class _Window:
    """Success and failure counts over the last ``window`` seconds, in time buckets."""

    def __init__(self, window: float, buckets: int) -> None:
        self._width = window / buckets
        self._buckets = buckets
        # [bucket index, total, failures], oldest first
        self._counts: deque[list[int]] = deque()
        self.total = 0
        self.failures = 0

    def add(self, now: float, success: bool) -> None:
        index = int(now // self._width)
        self._expire(index)
        if not self._counts or self._counts[-1][0] != index:
            self._counts.append([index, 0, 0])
        bucket = self._counts[-1]
        bucket[1] += 1
        self.total += 1
        if not success:
            bucket[2] += 1
            self.failures += 1

    def refresh(self, now: float) -> None:
        self._expire(int(now // self._width))

    def clear(self) -> None:
        self._counts.clear()
        self.total = self.failures = 0

    def _expire(self, index: int) -> None:
        while self._counts and self._counts[0][0] <= index - self._buckets:
            _, total, failures = self._counts.popleft()
            self.total -= total
            self.failures -= failures


class CircuitBreaker:
    """The breaker of one origin (``name`` is its ``scheme://host:port``).

    ``metrics`` (optional) gets the ``mrcache_origin_breaker_state{origin}``
    gauge and ``mrcache_origin_breaker_transitions_total{origin,to}``;
    ``listener`` (optional) is called with ``(old, new)`` on every transition.
    ``clock`` is monotonic seconds, injectable for tests.
    """

    def __init__(
        self,
        name: str,
        settings: BreakerSettings | None = None,
        *,
        metrics: Metrics | None = None,
        listener: Listener | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = name
        self.settings = settings or BreakerSettings()
        self._metrics = metrics
        self._listener = listener
        self._clock = clock
        self._state: BreakerState = "closed"
        self._window = _Window(self.settings.window, self.settings.buckets)
        self._opened_at = 0.0
        self._half_open_at = 0.0
        self._probes_left = 0
        self._probe_successes = 0
        if metrics is not None:
            metrics.origin_breaker_state.labels(name).set(STATE_GAUGE["closed"])

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self.state!r})"

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose time is up reads as half-open."""
        self._tick(self._clock())
        return self._state

    def allow(self) -> bool:
        """May a request go out now? In half-open, ``True`` consumes a probe slot."""
        now = self._clock()
        self._tick(now)
        if self._state == "closed":
            return True
        if self._state == "open":
            return False
        if self._probes_left == 0 and now - self._half_open_at >= self.settings.open_seconds:
            # the probes granted earlier never reported back: grant new ones
            self._half_open_at = now
            self._probes_left = self.settings.half_open_probes - self._probe_successes
        if self._probes_left > 0:
            self._probes_left -= 1
            return True
        return False

    def record(self, success: bool) -> None:
        """The outcome of an allowed request (a timeout is a failure)."""
        now = self._clock()
        self._tick(now)
        if self._state == "open":
            # a request let through before the breaker opened: it changes nothing
            return
        if self._state == "half_open":
            if not success:
                self._open(now)
                return
            self._probe_successes += 1
            if self._probe_successes >= self.settings.half_open_probes:
                self._transition("closed")
                self._window.clear()
            return
        self._window.add(now, success)
        w, s = self._window, self.settings
        if w.total >= s.min_requests and w.failures >= s.failure_rate * w.total:
            self._open(now)

    def release(self) -> None:
        """An allowed request ended without an outcome: give its probe slot back."""
        if self._state == "half_open":
            used = self._probe_successes + self._probes_left
            if used < self.settings.half_open_probes:
                self._probes_left += 1

    def _tick(self, now: float) -> None:
        if self._state == "open" and now - self._opened_at >= self.settings.open_seconds:
            self._half_open_at = now
            self._probes_left = self.settings.half_open_probes
            self._probe_successes = 0
            self._transition("half_open")
        elif self._state == "closed":
            self._window.refresh(now)

    def _open(self, now: float) -> None:
        self._opened_at = now
        self._probes_left = 0
        self._probe_successes = 0
        self._window.clear()
        self._transition("open")

    def _transition(self, to: BreakerState) -> None:
        old, self._state = self._state, to
        if old == to:
            return
        if self._metrics is not None:
            self._metrics.origin_breaker_state.labels(self.name).set(STATE_GAUGE[to])
            self._metrics.origin_breaker_transitions.labels(self.name, to).inc()
        if self._listener is not None:
            self._listener(old, to)
