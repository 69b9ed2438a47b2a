"""Faults on a seeded schedule, and what injects each one into the running platform.

=================  ==============================================================
kind               what happens
=================  ==============================================================
relay_kill         SIGKILL a region's relay; the supervisor restarts it
drop_events        a region's relay acknowledges a fraction of events unapplied
redis_restart      SIGTERM a region's Redis; restarted with its data (AOF)
redis_wipe         a region's Redis loses everything (FLUSHALL, then a restart)
redis_rollback     a region's Redis is restored from a snapshot taken seconds before
broker_pause       SIGSTOP the broker, then SIGCONT
outbox_drain       a long broker pause (writes go to the outboxes), then a slow link:
                   the outboxes drain slowly, from two caches per region at once
broker_slow        every Kafka round trip of the platform gets a delay
origin_slow        the database's origin answers late
origin_jitter      each origin answer waits a random time: answers overtake writes
home_slow          requests between regions to one region get a delay
memory_pressure    a region's Redis gets a maxmemory just above its use (volatile-lru)
=================  ==============================================================

Faults overlap, but never two on one target at once. :meth:`Injector.heal`
ends whatever is still in force when the fault phase ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tests.consistency.database import Database
from tests.consistency.harness import REGIONS, Platform
from tests.consistency.history import Fault, History

log = logging.getLogger(__name__)

KINDS: dict[str, float] = {
    "relay_kill": 3,
    "drop_events": 3,
    "redis_restart": 1.5,
    "redis_wipe": 1,
    "redis_rollback": 1,
    "broker_pause": 1.5,
    "outbox_drain": 1,
    "broker_slow": 1,
    "origin_slow": 1.5,
    "origin_jitter": 1.5,
    "home_slow": 2,
    "memory_pressure": 1.5,
}
_SHARED_TARGETS = {
    "broker_pause": "broker",
    "outbox_drain": "broker",
    "broker_slow": "broker",
    "origin_slow": "origin",
    "origin_jitter": "origin",
}


@dataclass(frozen=True)
class Planned:
    kind: str
    target: str
    at: float
    duration: float
    params: dict[str, Any] = field(default_factory=dict)


def schedule(
    seed: int, start: float, end: float, kinds: dict[str, float] | None = None
) -> list[Planned]:
    """The faults of one run, from ``start`` to ``end`` seconds, as the seed decides."""
    rng = random.Random(seed * 7919 + 17)
    weights = kinds or KINDS
    names = list(weights)
    busy: dict[str, float] = {}
    plan: list[Planned] = []
    at = start + rng.uniform(0.5, 2.0)
    while at < end:
        kind = rng.choices(names, weights=[weights[n] for n in names])[0]
        target = _SHARED_TARGETS.get(kind) or rng.choice(REGIONS)
        duration, params = _shape(rng, kind)
        duration = min(duration, max(0.0, end - at))
        if busy.get(target, 0.0) <= at:
            plan.append(Planned(kind, target, at, duration, params))
            # a restarted Redis comes back after the supervisor's restart delay; an outbox
            # drain goes on over the slow link after its pause
            settle = 5.0 if kind.startswith("redis") else 1.0
            busy[target] = at + duration + params.get("slow_for", 0) + settle
        at += rng.uniform(1.5, 5.0)
    return plan


def _shape(rng: random.Random, kind: str) -> tuple[float, dict[str, Any]]:
    if kind == "drop_events":
        return rng.uniform(2, 6), {"rate": round(rng.choice((0.3, 0.6, 1.0)), 2)}
    if kind == "redis_rollback":
        return rng.uniform(2, 5), {}
    if kind == "broker_pause":
        return rng.uniform(1.5, 5), {}
    if kind == "outbox_drain":
        return rng.uniform(5, 8), {"slow_ms": 120, "slow_for": 20}
    if kind == "broker_slow":
        return rng.uniform(5, 12), {"delay_ms": rng.choice((40, 80, 120))}
    if kind == "origin_slow":
        return rng.uniform(3, 8), {"delay_ms": rng.choice((300, 800, 1500))}
    if kind == "origin_jitter":
        return rng.uniform(5, 15), {"up_to_ms": rng.choice((100, 300))}
    if kind == "home_slow":
        return rng.uniform(3, 8), {"delay_ms": rng.choice((100, 250, 400))}
    if kind == "memory_pressure":
        return rng.uniform(3, 6), {}
    return 0.0, {}  # relay_kill, redis_restart, redis_wipe: instantaneous


class Injector:
    """Runs a schedule against a platform, recording each fault in the history."""

    def __init__(
        self,
        platform: Platform,
        database: Database,
        history: History,
        clock: Callable[[], float],
    ) -> None:
        self.platform = platform
        self.database = database
        self.history = history
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._http = httpx.AsyncClient(timeout=10.0, trust_env=False)
        # a Redis the faults restart drops its connections: retry across the restart
        self._redis = {
            r: redis.asyncio.Redis.from_url(
                u,
                retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 10),
                retry_on_error=[RedisConnectionError, RedisTimeoutError],
            )
            for r, u in platform.redis.items()
        }
        self._paused = False

    async def run(self, plan: list[Planned]) -> None:
        for planned in plan:
            wait = planned.at - self.clock()
            if wait > 0:
                await asyncio.sleep(wait)
            task = asyncio.create_task(self._one(planned))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _one(self, planned: Planned) -> None:
        fault = Fault(planned.kind, planned.target, self.clock(), 0.0, dict(planned.params))
        self.history.faults.append(fault)
        try:
            await getattr(self, f"_{planned.kind}")(planned)
        except Exception as exc:  # a fault that cannot be injected is noted, not fatal
            log.warning("fault %s on %s failed: %r", planned.kind, planned.target, exc)
            fault.params["error"] = repr(exc)
        finally:
            fault.end = self.clock()

    async def heal(self) -> None:
        """End every fault still in force (the fault phase is over)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._paused:
            self._signal_broker(signal.SIGCONT)
        self.platform.broker_proxy.delay = 0.0
        self.platform.broker_proxy.resume()
        for proxy in self.platform.region_proxies.values():
            proxy.delay = 0.0
        self.database.delay = self.database.jitter = 0.0
        for region in REGIONS:
            with contextlib.suppress(Exception):
                await self._drop_rate(region, 0.0)
            with contextlib.suppress(Exception):
                await self._redis[region].config_set("maxmemory", 0)
        for fault in self.history.faults:
            fault.end = max(fault.end, fault.start)

    async def close(self) -> None:
        await self._http.aclose()
        for client in self._redis.values():
            await client.aclose()

    # -- the faults ------------------------------------------------------------

    async def _relay_kill(self, p: Planned) -> None:
        os.kill(self.platform.pid(f"invalidation_relay:{p.target}"), signal.SIGKILL)

    async def _drop_rate(self, region: str, rate: float) -> None:
        url = self.platform.services[f"invalidation_relay:{region}"]
        # the relay may be restarting (after a delay that grows with each kill): keep trying
        for _ in range(200):
            try:
                reply = await self._http.put(f"{url}/v1/faults", json={"drop_rate": rate})
                if reply.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError(f"relay of {region} did not take drop_rate {rate}")

    async def _drop_events(self, p: Planned) -> None:
        await self._drop_rate(p.target, p.params["rate"])
        try:
            await asyncio.sleep(p.duration)
        finally:
            await self._drop_rate(p.target, 0.0)

    async def _redis_restart(self, p: Planned) -> None:
        os.kill(self.platform.pid(f"redis:{p.target}"), signal.SIGTERM)

    async def _redis_wipe(self, p: Planned) -> None:
        await self._redis[p.target].flushall()
        os.kill(self.platform.pid(f"redis:{p.target}"), signal.SIGTERM)

    async def _redis_rollback(self, p: Planned) -> None:
        client = self._redis[p.target]
        names = [name async for name in client.scan_iter(count=1000)]
        # one transaction: every key as it was at one instant, like a real snapshot (an
        # entry and its index never from two moments)
        async with client.pipeline(transaction=True) as pipe:
            for name in names:
                pipe.dump(name)
                pipe.pttl(name)
            replies = await pipe.execute()
        snapshot = [
            (name, max(0, ttl), dumped)
            for name, dumped, ttl in zip(names, replies[::2], replies[1::2], strict=True)
            if dumped is not None and ttl != -2
        ]
        await asyncio.sleep(p.duration)
        async with client.pipeline(transaction=True) as pipe:
            pipe.flushall()
            for name, ttl, dumped in snapshot:
                pipe.restore(name, ttl, dumped, replace=True)
            await pipe.execute()
        p.params["keys"] = len(snapshot)

    def _signal_broker(self, sig: signal.Signals) -> None:
        assert self.platform.broker.popen is not None
        self.platform.broker.popen.send_signal(sig)

    async def _broker_pause(self, p: Planned) -> None:
        self._signal_broker(signal.SIGSTOP)
        self._paused = True
        try:
            await asyncio.sleep(p.duration)
        finally:
            self._signal_broker(signal.SIGCONT)
            self._paused = False

    async def _outbox_drain(self, p: Planned) -> None:
        await self._broker_pause(p)
        # the outboxes filled during the pause now drain over a slow link
        self.platform.broker_proxy.delay = p.params["slow_ms"] / 2000
        try:
            await asyncio.sleep(p.params["slow_for"])
        finally:
            self.platform.broker_proxy.delay = 0.0

    async def _broker_slow(self, p: Planned) -> None:
        self.platform.broker_proxy.delay = p.params["delay_ms"] / 2000
        try:
            await asyncio.sleep(p.duration)
        finally:
            self.platform.broker_proxy.delay = 0.0

    async def _origin_slow(self, p: Planned) -> None:
        self.database.delay = p.params["delay_ms"] / 1000
        try:
            await asyncio.sleep(p.duration)
        finally:
            self.database.delay = 0.0

    async def _origin_jitter(self, p: Planned) -> None:
        self.database.jitter = p.params["up_to_ms"] / 1000
        try:
            await asyncio.sleep(p.duration)
        finally:
            self.database.jitter = 0.0

    async def _home_slow(self, p: Planned) -> None:
        proxy = self.platform.region_proxies[p.target]
        proxy.delay = p.params["delay_ms"] / 2000
        try:
            await asyncio.sleep(p.duration)
        finally:
            proxy.delay = 0.0

    async def _memory_pressure(self, p: Planned) -> None:
        client = self._redis[p.target]
        used = int((await client.info("memory"))["used_memory"])
        await client.config_set("maxmemory-policy", "volatile-lru")
        await client.config_set("maxmemory", used + 256 * 1024)
        try:
            await asyncio.sleep(p.duration)
        finally:
            await client.config_set("maxmemory", 0)
