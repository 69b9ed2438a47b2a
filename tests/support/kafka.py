"""Reading topics in tests with a real aiokafka consumer."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from libs.common import events
from libs.common.errors import InvalidEvent
from libs.common.events import Event


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    want: int,
    timeout: float = 20.0,
    keep: Callable[[ConsumerRecord[bytes, bytes]], bool] = lambda _: True,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Records of ``topic`` from the start that ``keep`` accepts, until ``want`` of them
    arrived or the deadline passed."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
    )
    # bounded like the reads: a broker that never answers (a paused proxy, say) must fail
    # the test, not hang it
    deadline = time.monotonic() + timeout
    found: list[ConsumerRecord[bytes, bytes]] = []
    try:
        await asyncio.wait_for(consumer.start(), timeout)
        while len(found) < want and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                found.extend(r for r in records if keep(r))
    finally:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(consumer.stop(), 10)
    return found


async def collect_events(
    bootstrap: str,
    *,
    want: int,
    ns: str | None = None,
    topic: str = "mrcache.invalidations",
    timeout: float = 30.0,
) -> list[Event]:
    """Read the event topic from the start until ``want`` events (of ``ns``) arrived."""

    def of_ns(record: ConsumerRecord[bytes, bytes]) -> bool:
        try:
            return ns is None or events.decode(record.value).ns == ns
        except InvalidEvent:
            return False

    records = await read_topic(bootstrap, topic, want=want, timeout=timeout, keep=of_ns)
    return [events.decode(r.value) for r in records]
