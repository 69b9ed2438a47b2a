"""One checker run: platform up, clients and faults for a while, faults healed, the
platform left to converge, every key read once more, then the verdict.

A run is named by its seed: the same seed replays the same operations per client
and the same fault schedule (``python -m bench.consistency --seed N``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio
from aiokafka.errors import KafkaError

from libs.common import events, keys
from libs.common.errors import InvalidEvent
from libs.common.kafka import make_consumer
from libs.common.settings import KafkaSettings
from tests.consistency.database import Database, RecordPublisher
from tests.consistency.faults import KINDS, Injector, schedule
from tests.consistency.harness import REGIONS, Platform, log_tails, running_platform
from tests.consistency.history import Event, History
from tests.consistency.invariants import Verdict, Violation, check, report
from tests.consistency.workload import NAMESPACES, Client, Targets, Workload, final_reads, now_clock

log = logging.getLogger(__name__)


@dataclass
class RunConfig:
    seed: int
    workdir: Path
    duration: float = 60.0
    clients: int = 12
    # mean pause of a client between operations (seconds)
    think: float = 0.05
    # the reconciler's interval; the freshness bound is derived from it
    interval: float = 2.0
    bound: float | None = None
    # no faults in the first `warmup` seconds, none in the last `cooldown`
    warmup: float = 3.0
    cooldown: float = 5.0
    faults: dict[str, float] = field(default_factory=lambda: dict(KINDS))

    @property
    def freshness_bound(self) -> float:
        """One reconcile interval, plus a pass, a relay's restart and a loaded machine."""
        return self.bound if self.bound is not None else self.interval + 4.0


async def read_events(kafka: KafkaSettings, timeout: float) -> list[Event] | None:
    """Every event on the topic, read from its start once the run is over (for the
    durable-event check); None when the topic could not be read to its end in time."""
    consumer = make_consumer(kafka, kafka.topic, group_id=None)
    await consumer.start()
    found: list[Event] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for batch in batches.values():
                for record in batch:
                    try:
                        event = events.decode(record.value)
                    except InvalidEvent:
                        continue
                    found.append(
                        Event(event.type, event.ns, event.version, event.key, event.tag, event.op)
                    )
            parts = list(consumer.assignment())
            if parts and not batches:
                ends = await consumer.end_offsets(parts)
                positions = {tp: await consumer.position(tp) for tp in ends}
                if all(positions[tp] >= end for tp, end in ends.items()):
                    return found
        return None
    finally:
        with contextlib.suppress(KafkaError, OSError):
            await consumer.stop()


async def snapshot(platform: Platform, history: History) -> bool:
    """Every region's applied versions and namespace metadata; True when they agree."""
    applied: dict[str, dict[str, dict[str, int]]] = {}
    metas: dict[str, dict[str, dict[str, int]]] = {}
    for region, url in platform.redis.items():
        client = redis.asyncio.Redis.from_url(url)
        try:
            applied[region], metas[region] = {}, {}
            for space in NAMESPACES:
                names = [space.key(n) for n in range(space.keys)]
                async with client.pipeline(transaction=False) as pipe:
                    for key in names:
                        pipe.hget(keys.index(space.name, keys.leaf_of(key)), key)
                    pipe.hgetall(keys.namespace_meta(space.name))
                    replies = await pipe.execute()
                applied[region][space.name] = {
                    key: int(v) for key, v in zip(names, replies[:-1], strict=True) if v
                }
                metas[region][space.name] = {k.decode(): int(v) for k, v in replies[-1].items()}
        finally:
            await client.aclose()
    history.applied, history.metas = applied, metas
    first = next(iter(applied.values()))
    return all(a == first for a in applied.values()) and all(
        m == next(iter(metas.values())) for m in metas.values()
    )


async def outboxes_drained(platform: Platform, timeout: float) -> bool:
    """Wait until no region's outbox holds events (each drains to the broker)."""
    clients = [redis.asyncio.Redis.from_url(url) for url in platform.redis.values()]
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            depths = [
                await c.llen(keys.outbox(r)) for c, r in zip(clients, platform.redis, strict=True)
            ]
            if not any(depths):
                return True
            await asyncio.sleep(0.25)
        return False
    finally:
        for client in clients:
            await client.aclose()


def namespace_specs() -> dict[str, dict[str, Any]]:
    return {
        s.name: {
            **s.config,
            "origin": s.origin,
            "record_versions": s.record_versions,
        }
        for s in NAMESPACES
    }


async def run(config: RunConfig, *, progress: bool = False) -> tuple[History, Verdict]:
    # a system-of-record write retried during a broker pause is expected, not news
    logging.getLogger("libs.common.changes").setLevel(logging.ERROR)
    clock = now_clock()
    history = History(config.seed, REGIONS, namespace_specs())
    history.bound = config.freshness_bound
    history.epoch0 = time.time() - clock()
    database = Database(history, clock)
    async with running_platform(config.workdir, database, interval=config.interval) as platform:
        try:
            verdict = await _drive(config, platform, database, history, clock, progress)
        except BaseException:
            log.exception("run failed; service logs:\n%s", log_tails(platform))
            raise
    return history, verdict


async def _drive(
    config: RunConfig,
    platform: Platform,
    database: Database,
    history: History,
    clock: Any,
    progress: bool,
) -> Verdict:
    kafka = platform.kafka
    publisher = RecordPublisher(kafka)
    await publisher.start()
    http = httpx.AsyncClient(
        timeout=httpx.Timeout(10.0),
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=100),
        trust_env=False,
    )
    injector = Injector(platform, database, history, clock)
    try:
        work = Workload(history, database, publisher, Targets(platform.replicas), clock, http)
        clients = [Client(n, config.seed, work, config.think) for n in range(config.clients)]
        stop = asyncio.Event()
        started = clock()
        tasks = [asyncio.create_task(c.run(stop)) for c in clients]
        fault_end = started + config.duration - config.cooldown
        plan = schedule(config.seed, started + config.warmup, fault_end, config.faults)
        faults = asyncio.create_task(injector.run(plan))
        while clock() < fault_end:
            await asyncio.sleep(min(5.0, max(0.0, fault_end - clock())))
            if progress:
                print(
                    f"  {clock():6.1f} s  {len(history.ops)} operations, "
                    f"{len(history.faults)} faults",
                    flush=True,
                )
        faults.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await faults
        await injector.heal()
        history.faults_end = clock()
        await asyncio.sleep(max(0.0, started + config.duration - clock()))
        stop.set()
        await asyncio.gather(*tasks)
        history.end = clock()
        deadline = history.end + history.bound
        while not await snapshot(platform, history) and clock() < deadline:
            await asyncio.sleep(0.25)
        await final_reads(work, Client(config.clients, config.seed, work, config.think))
        for op in history.ops[-len(REGIONS) * sum(s.keys for s in NAMESPACES) :]:
            op.via = op.via or "final"
        # an outbox filled while the broker was away is durable, not yet on the topic
        if not await outboxes_drained(platform, 60.0):
            history.notes.append("an outbox still held events 60 s after the run")
        # read straight from the broker, past the faults' proxy
        seen = await read_events(
            platform.kafka.model_copy(update={"bootstrap": platform.broker_url}), 60.0
        )
        if seen is None:
            history.notes.append("the topic could not be read to its end: events not checked")
        else:
            history.events = seen
        verdict = check(history)
        for key, count in platform.cluster().get("restarts", {}).items():
            caused = sum(
                1
                for f in history.faults
                if (f.kind == "relay_kill" and key == f"invalidation_relay:{f.target}")
                or (f.kind in ("redis_restart", "redis_wipe") and key == f"redis:{f.target}")
            )
            if count > caused:
                verdict.add(
                    Violation(
                        "no-server-error",
                        key,
                        f"{key} restarted {count} times, {caused} of them by faults: it crashed",
                    )
                )
        return verdict
    finally:
        # each part stops on its own: one failing to close must not hide why the run ended
        for close in (injector.close, http.aclose, publisher.stop):
            try:
                await close()
            except (Exception, asyncio.CancelledError) as exc:
                log.warning("closing %s: %r", getattr(close, "__qualname__", close), exc)


def summary(config: RunConfig, history: History, verdict: Verdict) -> str:
    kinds: dict[str, int] = {}
    for fault in history.faults:
        kinds[fault.kind] = kinds.get(fault.kind, 0) + 1
    acked = sum(1 for op in history.ops if op.outcome == "ok")
    head = (
        f"seed {config.seed}: {len(history.ops)} operations ({acked} ok) by {config.clients} "
        f"clients in {config.duration:g} s, freshness bound {history.bound:g} s\n"
        f"faults: {', '.join(f'{k} x{n}' for k, n in sorted(kinds.items())) or 'none'}\n"
    )
    notes = "".join(f"note: {n}\n" for n in history.notes)
    replay = (
        f"\nreplay: python -m bench.consistency --seed {config.seed} --duration {config.duration:g}"
    )
    return head + notes + report(history, verdict) + (replay if not verdict.ok else "")
