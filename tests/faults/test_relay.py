"""The invalidation relay as a real process, on a real broker and a real Redis.

Garbage never stops it, hand-written events.md JSON invalidates, a SIGKILL or
SIGTERM mid-stream loses nothing, and the ``relay_drop_rate`` drill drops
exactly where it is configured. Every test has its own topics; tests whose
consumer group must be their own use a region of their own.
"""

from __future__ import annotations

import asyncio
import base64
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from redis.asyncio import Redis

from libs.common import keys
from libs.common.events import Event, encode, key_event
from libs.common.settings import KafkaSettings
from libs.common.store import Lookup, RegionStore
from tests.support.kafka import read_topic
from tests.support.platform import Broker, RedisServer, eventually_async, start_redis
from tests.support.relay import (
    RelayProcess,
    own_region,
    own_topics,
    publish,
    publish_events,
    running_relay,
    start_relay,
)

ORIGIN = "us-east"


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RegionStore]:
    client = Redis.from_url(redis_server.url)
    yield RegionStore(client, tombstone_ttl=600)
    await client.aclose()


@pytest.fixture
def ns() -> str:
    return f"f-{uuid.uuid4().hex[:12]}"


# -- a stream of key events and the state it must end in --------------------------


@dataclass(frozen=True)
class Final:
    lookup: Lookup
    version: int
    value: bytes | None


def key_stream(ns: str, n_keys: int, versions: int, *, seed: int) -> list[list[Event]]:
    """``versions`` rounds; round r holds version r of every key: mixed set (with or
    without a replicated value) and delete, as a home region publishes them."""
    rng = random.Random(seed)
    rounds: list[list[Event]] = []
    for version in range(1, versions + 1):
        batch = []
        for i in range(n_keys):
            key = f"k{i}"
            kind = rng.choice(("set", "setv", "delete"))
            if kind == "delete":
                batch.append(key_event(ns, key, version, "delete", origin=ORIGIN))
            elif kind == "set":
                batch.append(key_event(ns, key, version, "set", origin=ORIGIN))
            else:
                value = f"{key}-v{version}".encode()
                batch.append(
                    key_event(ns, key, version, "set", origin=ORIGIN, value=value, ttl=600, gen=0)
                )
        rounds.append(batch)
    return rounds


def final_state(rounds: Sequence[Sequence[Event]]) -> dict[str, Final]:
    last: dict[str, Final] = {}
    for event in (e for batch in rounds for e in batch):
        assert event.key is not None
        if event.op == "delete":
            last[event.key] = Final(Lookup.TOMBSTONE, event.version, None)
        elif event.value_b64 is None:
            last[event.key] = Final(Lookup.SUPERSEDED, event.version, None)
        else:
            last[event.key] = Final(Lookup.HIT, event.version, event.value())
    return last


async def wrong_keys(store: RegionStore, ns: str, want: dict[str, Final]) -> list[str]:
    """The keys whose state in Redis is not the final one of their stream."""
    names = sorted(want)
    wrong: list[str] = []
    for start in range(0, len(names), 500):
        chunk = names[start : start + 500]
        for key, got in zip(chunk, await store.read_many(ns, chunk), strict=True):
            value = got.entry.value if got.lookup is Lookup.HIT and got.entry else None
            if Final(got.lookup, got.held_version, value) != want[key]:
                wrong.append(key)
    return wrong


async def until_final(
    store: RegionStore, ns: str, want: dict[str, Final], *, timeout: float
) -> None:
    left: list[str] = []

    async def done() -> bool:
        left[:] = await wrong_keys(store, ns, want)
        return not left

    try:
        await eventually_async(done, timeout=timeout, what="every key at its last version")
    except AssertionError:
        raise AssertionError(f"{len(left)} keys not final, e.g. {left[:5]}") from None


async def publish_rounds(kafka: KafkaSettings, rounds: Sequence[Sequence[Event]]) -> None:
    """One round acknowledged before the next, so each key's versions are in order."""
    for batch in rounds:
        await publish_events(kafka, batch)


async def until_applied(relay: RelayProcess, at_least: int, *, timeout: float = 60.0) -> int:
    async def enough() -> int | None:
        applied = await relay.applied()
        return applied if applied >= at_least else None

    return await eventually_async(
        enough, timeout=timeout, what=f"relay applied {at_least}", interval=0.02
    )


# -- garbage ------------------------------------------------------------------------


async def test_garbage_is_counted_dead_lettered_and_consumption_continues(
    tmp_path: Path, broker: Broker, redis_server: RedisServer, store: RegionStore, ns: str
) -> None:
    kafka = await own_topics(broker.bootstrap)
    region = own_region()
    # one Kafka key for everything: garbage and valid events share a partition, in order
    pkey = f"{ns}/k".encode()
    bad_field = orjson.loads(encode(key_event(ns, "k", 2, "set", origin=ORIGIN)))
    bad_field["op"] = "upsert"
    # events a PUT could not have made: the relay must not install them either
    hostile: list[dict[str, object]] = [
        {"ttl": 1e300},
        {"content_type": "text/plain\r\nSet-Cookie: a=b"},
        {"content_type": "text/plain; charset=\u00e9"},
        # over this relay's MRCACHE_MAX_VALUE_BYTES (a broker's default refuses over 1 MB)
        {"value_b64": base64.b64encode(b"x" * 1001).decode()},
    ]
    replicated = orjson.loads(
        encode(key_event(ns, "k", 2, "set", origin=ORIGIN, value=b"v", ttl=60.0))
    )
    garbage: list[bytes | None] = [
        b"not json {",
        b'{"hello": "world"}',  # JSON, not an event
        b'"just a string"',  # JSON, not an object
        orjson.dumps(bad_field),  # an event with a bad field
        None,  # a null value (a Kafka tombstone)
        *(orjson.dumps({**replicated, **change}) for change in hostile),
    ]
    valid_after = [
        key_event(ns, "k", 3, "set", origin=ORIGIN),
        key_event(ns, "k", 4, "delete", origin=ORIGIN),
        key_event(ns, "other", 1, "set", origin=ORIGIN),
    ]
    limits = {"MRCACHE_MAX_VALUE_BYTES": "1000"}
    with running_relay(tmp_path, region, redis_server.url, kafka, env=limits) as relay:
        await publish_events(kafka, [key_event(ns, "k", 1, "set", origin=ORIGIN)])
        await publish(kafka, [(pkey, g) for g in garbage])
        await publish(kafka, [(pkey, encode(e)) for e in valid_after])

        async def all_applied() -> bool:
            k, other = await store.read_many(ns, ["k", "other"])
            return (k.lookup, k.held_version, other.lookup) == (
                Lookup.TOMBSTONE,
                4,
                Lookup.SUPERSEDED,
            )

        await eventually_async(all_applied, timeout=30, what="valid events after the garbage")
        invalid = await relay.metric("mrcache_invalid_events_total", region=region)
        assert invalid == len(garbage)
        assert await relay.metric("mrcache_relay_events_total", outcome="invalid") == len(garbage)
        assert await relay.applied() == 4
        dead = await read_topic(broker.bootstrap, kafka.dlq_topic, want=len(garbage))
        assert relay.proc.alive()
        log = relay.log()
    assert [r.value for r in dead] == garbage
    sources = []
    for record in dead:
        headers = dict(record.headers)
        assert headers["mrcache.error"], headers
        assert headers["mrcache.region"] == region.encode()
        sources.append(headers["mrcache.source"].decode())
        assert record.key == pkey
    topic, partition, _ = sources[0].split("/")
    assert topic == kafka.topic
    offsets = [int(s.rsplit("/", 1)[1]) for s in sources]
    assert offsets == list(range(offsets[0], offsets[0] + len(garbage)))  # after the first event
    assert [f"/{partition}/" in s for s in sources] == [True] * len(garbage)
    assert log.count("invalid event at") == len(garbage)
    assert "Traceback" not in log


# -- an event written by hand ---------------------------------------------------------


async def test_hand_written_event_invalidates_and_older_replay_changes_nothing(
    tmp_path: Path, broker: Broker, redis_server: RedisServer, store: RegionStore, ns: str
) -> None:
    kafka = await own_topics(broker.bootstrap)
    region = own_region()
    cached = await store.write(ns, "user/7", b"old", content_type="text/plain", ttl=600)
    entry_key = keys.entry(ns, "user/7")

    def event(version: int, op: str) -> bytes:
        # events.md by hand, as a system of record writes it, with a field from the future
        return orjson.dumps(
            {
                "v": 1,
                "type": "key",
                "ns": ns,
                "key": "user/7",
                "version": version,
                "op": op,
                "origin": "users-db",
                "ts_ms": int(time.time() * 1000),
                "id": uuid.uuid4().hex,
                "trace": {"span": "abc"},
            }
        )

    newer = cached.version + 10
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        with running_relay(tmp_path, region, redis_server.url, kafka) as relay:
            mkey = f"{ns}/user/7".encode()
            await producer.send_and_wait(kafka.topic, event(newer, "set"), key=mkey)

            async def held(lookup: Lookup, version: int) -> bool:
                got = await store.read(ns, "user/7")
                return (got.lookup, got.held_version) == (lookup, version)

            await eventually_async(lambda: held(Lookup.SUPERSEDED, newer), what="marker")
            fields = await store.redis.hgetall(entry_key)
            assert fields[b"tomb"] == b"m" and b"v" not in fields  # the old copy is gone

            await producer.send_and_wait(kafka.topic, event(newer + 1, "delete"), key=mkey)
            await eventually_async(lambda: held(Lookup.TOMBSTONE, newer + 1), what="tombstone")
            before = await store.redis.hgetall(entry_key)
            assert before[b"tomb"] == b"1"

            # replays: the same versions again, and the version the region had cached
            for version, op in ((newer, "set"), (newer + 1, "delete"), (cached.version, "set")):
                await producer.send_and_wait(kafka.topic, event(version, op), key=mkey)

            async def three_stale() -> bool:
                return await relay.metric("mrcache_relay_events_total", outcome="stale") == 3

            await eventually_async(three_stale, what="the replays consumed")
            assert await store.redis.hgetall(entry_key) == before  # not even its time
            assert await relay.applied() == 2
            assert "Traceback" not in relay.log()
    finally:
        await producer.stop()


# -- SIGKILL mid-stream ---------------------------------------------------------------


@pytest.mark.slow
async def test_sigkill_mid_stream_loses_nothing(
    tmp_path: Path, broker: Broker, redis_server: RedisServer, store: RegionStore, ns: str
) -> None:
    kafka = await own_topics(broker.bootstrap)
    region = own_region()  # its consumer group is this test's alone
    rounds = key_stream(ns, n_keys=2000, versions=5, seed=7)
    want = final_state(rounds)
    total = sum(len(r) for r in rounds)
    assert total == 10_000

    first = start_relay(tmp_path, region, redis_server.url, kafka)
    second: RelayProcess | None = None
    publisher = asyncio.create_task(publish_rounds(kafka, rounds))
    try:
        at_kill = await until_applied(first, 1500)
        first.proc.kill()  # SIGKILL: no drain, no commit of the batch in hand
        assert first.proc.popen is not None and first.proc.popen.returncode == -signal.SIGKILL
        assert at_kill < total, "the relay finished before it could be killed mid-stream"

        # the same region: same consumer group, resumes from the committed offsets
        second = start_relay(tmp_path, region, redis_server.url, kafka, wait_ready=False)
        await second.until_ready(timeout=60)  # after the dead member's session timeout
        await publisher
        await until_final(store, ns, want, timeout=90)
        assert await second.applied() > 0
        assert await second.metric("mrcache_invalid_events_total") == 0
        assert "Traceback" not in second.log()
    finally:
        if not publisher.done():
            publisher.cancel()
        first.proc.stop()
        if second is not None:
            second.proc.stop()


# -- the relay_drop_rate drill ------------------------------------------------------


@pytest.fixture
def two_redis(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer]]:
    servers = [start_redis(tmp_path), start_redis(tmp_path)]
    try:
        yield servers[0], servers[1]
    finally:
        for server in servers:
            if server.proc is not None:
                server.proc.stop()


async def test_relay_drop_rate_drops_only_in_the_named_region(
    tmp_path: Path, broker: Broker, two_redis: tuple[RedisServer, RedisServer], ns: str
) -> None:
    kafka = await own_topics(broker.bootstrap)
    config = tmp_path / "mrcache.toml"
    config.write_text(
        '[platform]\nregions = ["us-east", "eu-west", "ap-south"]\n\n'
        '[faults]\nrelay_drop_rate = {"eu-west" = 1.0}\n'
    )
    eu_redis, ap_redis = two_redis
    rounds = key_stream(ns, n_keys=20, versions=2, seed=3)
    want = final_state(rounds)
    total = sum(len(r) for r in rounds)
    await publish_rounds(kafka, rounds)

    eu = start_relay(tmp_path, "eu-west", eu_redis.url, kafka, config=config, wait_ready=False)
    ap: RelayProcess | None = None
    eu_client, ap_client = Redis.from_url(eu_redis.url), Redis.from_url(ap_redis.url)
    try:
        ap = start_relay(tmp_path, "ap-south", ap_redis.url, kafka, config=config, wait_ready=False)
        await asyncio.gather(eu.until_ready(), ap.until_ready())

        async def eu_dropped_all() -> bool:
            return await eu.metric("mrcache_relay_events_total", outcome="dropped") == total

        await eventually_async(eu_dropped_all, timeout=30, what="eu-west consumed every event")
        await until_final(RegionStore(ap_client, tombstone_ttl=600), ns, want, timeout=30)

        eu_info, ap_info = await eu.info(), await ap.info()
        assert (eu_info["drop_rate"], eu_info["applied"]) == (1.0, 0)
        assert (ap_info["drop_rate"], ap_info["applied"]) == (0.0, total)
        assert await eu.metric("mrcache_relay_events_total", outcome="applied") == 0
        assert await ap.metric("mrcache_relay_events_total", outcome="dropped") == 0
        assert [k async for k in eu_client.scan_iter(match=f"{keys.PREFIX}:*{ns}*")] == []
    finally:
        await eu_client.aclose()
        await ap_client.aclose()
        eu.proc.stop()
        if ap is not None:
            ap.proc.stop()


# -- SIGTERM while events flow ----------------------------------------------------------


@pytest.mark.slow
async def test_sigterm_mid_stream_exits_cleanly_and_a_restart_applies_the_rest(
    tmp_path: Path, broker: Broker, redis_server: RedisServer, store: RegionStore, ns: str
) -> None:
    kafka = await own_topics(broker.bootstrap)
    region = own_region()
    rounds = key_stream(ns, n_keys=1000, versions=4, seed=11)
    want = final_state(rounds)
    total = sum(len(r) for r in rounds)

    first = start_relay(tmp_path, region, redis_server.url, kafka)
    second: RelayProcess | None = None
    # the last rounds are published once the first relay is gone: a relay applies all it
    # fetched in a few large round trips, so it may well finish the first rounds while it
    # drains on SIGTERM, and the restart must still have something to apply
    publisher = asyncio.create_task(publish_rounds(kafka, rounds[:2]))
    try:
        seen = await until_applied(first, 500)
        assert first.proc.popen is not None
        first.proc.popen.send_signal(signal.SIGTERM)

        async def exited() -> tuple[int] | None:  # a tuple, so exit code 0 is truthy
            assert first.proc.popen is not None
            code = first.proc.popen.poll()
            return None if code is None else (code,)

        (code,) = await eventually_async(exited, timeout=25, what="relay exits on SIGTERM")
        assert code in (0, -signal.SIGTERM), first.log()
        log = first.log()
        assert "Traceback" not in log, log
        assert "did not drain" not in log
        assert seen < total, "the relay finished before it could be stopped mid-stream"

        await publisher
        publisher = asyncio.create_task(publish_rounds(kafka, rounds[2:]))
        second = start_relay(tmp_path, region, redis_server.url, kafka, wait_ready=False)
        await second.until_ready(timeout=60)
        await publisher
        await until_final(store, ns, want, timeout=60)
        # the drain committed what it applied: the restart re-reads nothing
        assert await second.metric("mrcache_relay_events_total", outcome="stale") == 0
        assert 0 < await second.applied() < total
    finally:
        if not publisher.done():
            publisher.cancel()
        first.proc.stop()
        if second is not None:
            second.proc.stop()


# -- one event that cannot be applied -------------------------------------------------


async def test_an_event_that_cannot_be_applied_holds_back_only_its_own_partition(
    tmp_path: Path, broker: Broker, redis_server: RedisServer, store: RegionStore, ns: str
) -> None:
    """The relay used to work through every partition in one loop, so one event it kept
    retrying (a refused bump, a corrupt entry) stopped every later event of the region.
    Now it is retried on its own while the other partitions go on, and applied (in order)
    once Redis takes it."""
    kafka = await own_topics(broker.bootstrap)
    region = own_region()
    # an entry Redis cannot treat as a hash: every script on it fails until it is repaired
    stuck = "poisoned"
    await store.redis.set(keys.entry(ns, stuck), b"not a hash")
    # keys of the other partitions (what shares the stuck one's partition waits behind it)
    partitions = list(range(12))
    partition = DefaultPartitioner()
    mine = partition(f"{ns}/{stuck}".encode(), partitions, partitions)
    others = [
        k
        for k in (f"o{i}" for i in range(60))
        if partition(f"{ns}/{k}".encode(), partitions, partitions) != mine
    ]
    with running_relay(tmp_path, region, redis_server.url, kafka) as relay:
        await publish_events(kafka, [key_event(ns, stuck, 5, "set", origin=ORIGIN)])
        await publish_events(kafka, [key_event(ns, k, 3, "set", origin=ORIGIN) for k in others])

        async def others_applied() -> bool:
            results = await store.read_many(ns, others)
            return all(r.lookup is Lookup.SUPERSEDED and r.held_version == 3 for r in results)

        await eventually_async(others_applied, timeout=30, what="the other partitions applied")
        assert "waits" in relay.log()  # the stuck one is retried, not skipped
        await store.redis.delete(keys.entry(ns, stuck))  # an operator repairs the entry
        await eventually_async(
            lambda: _held(store, ns, stuck, 5), timeout=30, what="the stuck event applied at last"
        )
        assert relay.proc.alive() and "Traceback" not in relay.log()


async def _held(store: RegionStore, ns: str, key: str, version: int) -> bool:
    return (await store.read(ns, key)).held_version == version
