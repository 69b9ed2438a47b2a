"""Reading the event topic in tests with a real aiokafka consumer."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer

from libs.common import events
from libs.common.events import Event


async def collect_events(
    bootstrap: str,
    *,
    want: int,
    ns: str | None = None,
    topic: str = "mrcache.invalidations",
    timeout: float = 30.0,
) -> list[Event]:
    """Read the topic from the start until ``want`` events (of ``ns``) arrived."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    found: list[Event] = []
    try:
        deadline = time.monotonic() + timeout
        while len(found) < want and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    ev = events.decode(record.value)
                    if ns is None or ev.ns == ns:
                        found.append(ev)
    finally:
        await consumer.stop()
    return found
