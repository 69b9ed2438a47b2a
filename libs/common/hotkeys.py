"""Finding a process's hot keys from a sample of its reads.

Every ``sample_every``-th read is counted in a Space-Saving summary (Metwally
et al., 2005) of at most ``capacity`` keys: a key not yet counted takes the
place of the least counted one and inherits its count as its possible error,
so the summary never misses a key whose share of the sample exceeds
``1 / capacity``, in memory bounded by ``capacity`` whatever the number of
distinct keys. At the end of each window the guaranteed counts (count minus
error) become rates (``count * sample_every / window``); keys at or above
``threshold`` reads per second are *hot* until the next window ends. The cost
on the read path is one integer increment for unsampled reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable

HotKey = tuple[str, str]


class HotKeys:
    """Sampled top-k of ``(ns, key)`` reads, in windows of ``window`` seconds."""

    def __init__(
        self,
        *,
        threshold: float,
        sample_every: int = 8,
        capacity: int = 128,
        window: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if sample_every < 1 or capacity < 1 or window <= 0:
            raise ValueError("sample_every and capacity must be >= 1, window > 0")
        self.threshold = threshold
        self.sample_every = sample_every
        self.capacity = capacity
        self.window = window
        self._clock = clock
        self._reads = 0
        # key -> [count, error inherited from the key it replaced]
        self._counts: dict[HotKey, list[int]] = {}
        self._window_end = clock() + window
        self._hot: frozenset[HotKey] = frozenset()
        # the last window's estimated reads per second, highest first
        self.ranking: list[tuple[HotKey, float]] = []

    def observe(self, ns: str, key: str) -> bool:
        """Count a read (one in ``sample_every``); whether ``(ns, key)`` is hot now."""
        self._reads += 1
        if self._reads % self.sample_every == 0:
            self._sample((ns, key))
        return (ns, key) in self._hot

    def is_hot(self, ns: str, key: str) -> bool:
        return (ns, key) in self._hot

    @property
    def hot(self) -> frozenset[HotKey]:
        return self._hot

    def top(self, n: int) -> list[tuple[HotKey, float]]:
        return self.ranking[:n]

    def tick(self) -> None:
        """End the window if it is over, so keys no longer read stop being hot."""
        now = self._clock()
        if now >= self._window_end:
            self._roll(now)

    def _sample(self, item: HotKey) -> None:
        now = self._clock()
        if now >= self._window_end:
            self._roll(now)
        counts = self._counts
        held = counts.get(item)
        if held is not None:
            held[0] += 1
        elif len(counts) < self.capacity:
            counts[item] = [1, 0]
        else:
            # Space-Saving: the newcomer replaces the least counted key and inherits its
            # count, which it may not have earned: that is its error
            victim = min(counts, key=lambda k: counts[k][0])
            least = counts.pop(victim)[0]
            counts[item] = [least + 1, least]

    def _roll(self, now: float) -> None:
        elapsed = self.window + max(0.0, now - self._window_end)
        rates = sorted(
            (
                (k, (count - error) * self.sample_every / elapsed)
                for k, (count, error) in self._counts.items()
                if count > error
            ),
            key=lambda kv: kv[1],
            reverse=True,
        )
        self.ranking = rates
        self._hot = frozenset(k for k, rate in rates if rate >= self.threshold)
        self._counts = {}
        self._window_end = now + self.window
