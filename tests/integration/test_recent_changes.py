"""The reconciler's fast lane on a real broker and real Redis: a change a region's relay
never applied is repaired shortly after it was published, not one interval later."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from libs.common import events, keys
from libs.common.apply import apply_event
from libs.common.config import PlatformConfig
from libs.common.kafka import ensure_topics, make_producer
from libs.common.metrics import Metrics
from libs.common.settings import KafkaSettings
from libs.common.store import Lookup, RegionStore
from services.reconciler.recent import RecentChanges
from services.reconciler.reconcile import Change, Reconciler
from tests.support.platform import Broker, RedisServer, eventually_async


@pytest.fixture
async def stores(redis_server: RedisServer) -> AsyncIterator[dict[str, RegionStore]]:
    base = redis_server.url.rsplit("/", 1)[0]
    clients = {
        name: Redis.from_url(f"{base}/{db}") for name, db in (("us-east", 7), ("eu-west", 8))
    }
    yield {name: RegionStore(c, tombstone_ttl=60) for name, c in clients.items()}
    for c in clients.values():
        await c.aclose()


@pytest.fixture
async def kafka(broker: Broker) -> KafkaSettings:
    settings = KafkaSettings(bootstrap=broker.bootstrap, topic=f"recent-{uuid.uuid4().hex[:8]}")
    await asyncio.wait_for(ensure_topics(settings, partitions=2), 30)
    return settings


def reconciler(stores: dict[str, RegionStore]) -> Reconciler:
    cfg = PlatformConfig.model_validate({"platform": {"regions": ["us-east", "eu-west"]}})
    return Reconciler(cfg, stores, pause=0)


async def test_changes_are_checked_and_repaired_in_every_region(
    stores: dict[str, RegionStore], ns: str
) -> None:
    us, eu = stores["us-east"], stores["eu-west"]
    w = await us.write(ns, "k", b"v", content_type="x", ttl=60)
    _, gone = await us.tombstone(ns, "d")
    _, gen = await us.bump_namespace(ns)
    _, tag = await us.bump_tag(ns, "red")
    # eu-west is already up to date for this one: nothing to do there
    await us.tombstone(ns, "same", 10, superseded=True)
    await eu.tombstone(ns, "same", 10, superseded=True)
    checked = await reconciler(stores).check_changes(
        [
            Change(ns, "k", w.version),
            Change(ns, "d", gone),
            Change(ns, None, gen),
            Change(ns, "same", 10),
        ]
    )
    assert checked.repairs == {"us-east": 0, "eu-west": 4}  # two keys, the generation, the tag
    assert (checked.behind, checked.deferred) == (2, [])
    assert (await eu.read(ns, "k")).held_version == w.version
    assert (await eu.read(ns, "d")).lookup is Lookup.TOMBSTONE
    assert await eu.stamps(ns, ("red",), clock=False) == (gen, (tag,))
    # a second look finds nothing left to repair
    again = await reconciler(stores).check_changes([Change(ns, "k", w.version)])
    assert sum(again.repairs.values()) == 0


async def test_a_dropped_event_is_repaired_within_the_delay(
    stores: dict[str, RegionStore], kafka: KafkaSettings, ns: str
) -> None:
    us, eu = stores["us-east"], stores["eu-west"]
    metrics = Metrics()
    recent = RecentChanges(kafka, reconciler(stores), metrics, delay=0.2)
    producer: AIOKafkaProducer = make_producer(kafka)
    await recent.start()
    await producer.start()
    try:
        await eventually_async(lambda: _ready(recent), timeout=30, what="following the topic")
        w = await us.write(ns, "k", b"v2", content_type="x", ttl=60)
        # what the home region publishes; eu-west's relay "dropped" it
        event = events.key_event(ns, "k", w.version, "set", origin="us-east")
        await producer.send_and_wait(kafka.topic, events.encode(event), key=f"{ns}/k".encode())
        await producer.send_and_wait(kafka.topic, b"not json at all")  # skipped, not fatal

        async def repaired() -> bool:
            return (await eu.read(ns, "k")).held_version == w.version

        await eventually_async(repaired, timeout=5, what="eu-west repaired")
        assert (
            metrics.registry.get_sample_value(
                "mrcache_reconciler_recent_repairs_total", {"region": "eu-west"}
            )
            == 1.0
        )
        assert (
            await eu.redis.hget(keys.index(ns, keys.leaf_of("k")), "k") == str(w.version).encode()
        )
    finally:
        await producer.stop()
        await recent.stop()


async def _ready(recent: RecentChanges) -> bool:
    return recent.ready


async def test_a_burst_the_relays_are_still_applying_is_looked_at_again_not_repaired(
    stores: dict[str, RegionStore], kafka: KafkaSettings, ns: str
) -> None:
    """Past ``repair_rate`` keys a second, keys found behind are deferred: once the
    relay has caught up, the later look finds nothing to repair (no racing the relay)."""
    us, eu = stores["us-east"], stores["eu-west"]
    metrics = Metrics()
    recent = RecentChanges(kafka, reconciler(stores), metrics, delay=0.2, repair_rate=5)
    producer: AIOKafkaProducer = make_producer(kafka)
    await recent.start()
    await producer.start()
    burst = 60
    try:
        await eventually_async(lambda: _ready(recent), timeout=30, what="following the topic")
        published = []
        for i in range(burst):
            w = await us.write(ns, f"b{i}", b"v", content_type="x", ttl=60)
            event = events.key_event(ns, f"b{i}", w.version, "set", origin="us-east")
            published.append(event)
            await producer.send(kafka.topic, events.encode(event), key=f"{ns}/b{i}".encode())
        await producer.flush()

        def deferred() -> float:
            return (
                metrics.registry.get_sample_value("mrcache_reconciler_recent_deferred_total") or 0
            )

        await eventually_async(lambda: _true(deferred() > 0), timeout=10, what="keys deferred")
        # the relay catches up now: what was deferred needs no repair any more
        for event in published:
            await apply_event(eu, event)

        async def all_looked_at() -> bool:
            checks = metrics.registry.get_sample_value("mrcache_reconciler_recent_checks_total")
            return (checks or 0) >= burst + deferred()

        await eventually_async(all_looked_at, timeout=15, what="deferred keys looked at again")
        repaired = (
            metrics.registry.get_sample_value(
                "mrcache_reconciler_recent_repairs_total", {"region": "eu-west"}
            )
            or 0
        )
        assert repaired < burst / 2, f"{repaired} of {burst} keys repaired behind the relay"
        for event in published:
            assert (await eu.read(ns, event.key or "")).held_version == event.version
    finally:
        await producer.stop()
        await recent.stop()


async def _true(value: bool) -> bool:
    return value
