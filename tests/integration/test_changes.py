"""Change events published by an application, read back from a real broker."""

from __future__ import annotations

import asyncio
import socket
import time

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from libs.common.changes import ChangePublisher, publish_change
from libs.common.errors import EventsUnavailable
from libs.common.kafka import ensure_topics
from libs.common.processes import free_port
from libs.common.settings import KafkaSettings
from tests.support.kafka import collect_events
from tests.support.platform import Broker


@pytest.fixture
async def settings(broker: Broker) -> KafkaSettings:
    settings = KafkaSettings(bootstrap=broker.bootstrap, publish_timeout=10.0)
    await asyncio.wait_for(ensure_topics(settings), 30)
    return settings


async def test_published_changes_carry_every_events_md_field(
    settings: KafkaSettings, ns: str
) -> None:
    before = int(time.time() * 1000)
    async with ChangePublisher(settings, origin="orders-db") as publisher:
        sent_set = await publisher.publish_change(ns, "order:17", 1_718_000_000_123_456, "set")
        sent_delete = await publisher.publish_change(
            ns, "order:17", 1_718_000_000_999_999, "delete"
        )
    after = int(time.time() * 1000)

    got = await collect_events(settings.bootstrap, want=2, ns=ns)
    assert got == [sent_set, sent_delete]
    for event, op, version in (
        (got[0], "set", 1_718_000_000_123_456),
        (got[1], "delete", 1_718_000_000_999_999),
    ):
        assert event.type == "key"
        assert event.ns == ns
        assert event.key == "order:17"
        assert event.version == version
        assert event.op == op
        assert event.origin == "orders-db"
        assert before <= event.ts_ms <= after
        assert len(event.id) >= 16
        assert event.tag is None and event.value_b64 is None
    assert got[0].id != got[1].id


async def test_wire_format_and_kafka_key(settings: KafkaSettings, ns: str) -> None:
    sent = await publish_change(settings, ns, "user/7", 5, "set")
    consumer = AIOKafkaConsumer(
        settings.topic,
        bootstrap_servers=settings.bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    found = None
    try:
        deadline = time.monotonic() + 30
        while found is None and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    if record.key == f"{ns}/user/7".encode():
                        found = record
    finally:
        await consumer.stop()
    assert found is not None, "the event never arrived"
    body = orjson.loads(found.value)
    assert body == {
        "v": 1,
        "type": "key",
        "ns": ns,
        "key": "user/7",
        "version": 5,
        "op": "set",
        "origin": "app",
        "ts_ms": sent.ts_ms,
        "id": sent.id,
    }


async def test_unreachable_broker_raises_within_the_timeout() -> None:
    settings = KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}", publish_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(EventsUnavailable):
        await publish_change(settings, "users", "user:7", 3, "set")
    # connect and send are bounded by publish_timeout each
    assert time.monotonic() - started < 3 * settings.publish_timeout

    publisher = ChangePublisher(settings, origin="orders-db")
    started = time.monotonic()
    with pytest.raises(EventsUnavailable):
        await publisher.start()
    assert time.monotonic() - started < 2 * settings.publish_timeout
    with pytest.raises(RuntimeError, match="start"):
        await publisher.publish_change("users", "user:7", 3, "set")


async def test_silent_broker_raises_within_the_timeout() -> None:
    """A port that accepts connections but never answers must not hang the caller."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        settings = KafkaSettings(bootstrap=f"127.0.0.1:{port}", publish_timeout=1.0)
        started = time.monotonic()
        with pytest.raises(EventsUnavailable):
            await publish_change(settings, "users", "user:7", 3, "set")
        assert time.monotonic() - started < 3 * settings.publish_timeout
