"""The region's ranking of hot keys in Redis, for warming another region from it.

Every process adds what its :class:`~libs.common.hotkeys.HotKeys` estimated
(reads per second times the flush interval) to one sorted set per region; once
per half-life one process halves every score and trims the set, so the ranking
tells what is hot now, not what was once. ``mrcache warm`` reads it through
``GET /internal/v1/hot``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.exceptions import RedisError

from libs.common import keys
from libs.common.hotkeys import HotKeys
from libs.common.metrics import Metrics
from libs.common.redisclient import RedisClient

log = logging.getLogger(__name__)


class HotRanking:
    """``start()`` / ``stop()`` own the flush task."""

    def __init__(
        self,
        redis: RedisClient,
        hotkeys: HotKeys,
        metrics: Metrics,
        region: str,
        *,
        interval: float = 5.0,
        half_life: float = 60.0,
        keep: int = 10_000,
        top: int = 128,
    ) -> None:
        self.redis = redis
        self.hotkeys = hotkeys
        self.interval = interval
        self.half_life = half_life
        self.keep = keep
        self.top = top
        self._key = keys.hot(region)
        self._decay_key = keys.hot_decay(region)
        self._gauge = metrics.hot_keys.labels(region)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except RedisError as exc:
                log.info("hot-key ranking not flushed: %r", exc)

    async def flush(self) -> None:
        self.hotkeys.tick()
        self._gauge.set(len(self.hotkeys.hot))
        ranking = self.hotkeys.top(self.top)
        if ranking:
            async with self.redis.pipeline(transaction=False) as pipe:
                for (ns, key), rate in ranking:
                    pipe.zincrby(self._key, rate * self.interval, f"{ns}/{key}")
                await pipe.execute()
        if await self.redis.set(self._decay_key, b"1", nx=True, px=int(self.half_life * 1000)):
            # one process per half-life: every score halves, the long tail goes
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zunionstore(self._key, {self._key: 0.5})
                pipe.zremrangebyrank(self._key, 0, -(self.keep + 1))
                await pipe.execute()

    async def read(self, n: int, ns: str | None = None) -> list[tuple[str, str, float]]:
        """The region's ``n`` hottest keys (of namespace ``ns``), hottest first:
        ``(ns, key, score)``."""
        last = n - 1 if ns is None else self.keep
        found: list[Any] = list(await self.redis.zrevrange(self._key, 0, last, withscores=True))
        out = []
        for member, score in found:
            text = member.decode() if isinstance(member, bytes) else str(member)
            name, _, key = text.partition("/")
            if ns is None or name == ns:
                out.append((name, key, float(score)))
        return out[:n]
