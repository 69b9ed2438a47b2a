"""The floor the broker sets: a bare aiokafka producer -> consumer at a given rate.

Events carry their send time; a consumer with the relays' fetch settings (from
the end of a topic of its own, 12 partitions like the event topic) records
when each arrives. Run against the platform's own broker in the same run as the
propagation measurement, so the platform's lag can be read as a multiple of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

from bench.propagation_measure import Summary
from libs.common.kafka import ensure_topics, follow_from_end, make_consumer, make_producer, records
from libs.common.settings import KafkaSettings


async def floor(bootstrap: str, rate: float, duration: float) -> Summary:
    """Publish ``rate`` events a second for ``duration`` s; publish -> consumed lags."""
    settings = KafkaSettings(bootstrap=bootstrap, topic=f"floor-{uuid.uuid4().hex[:8]}")
    await asyncio.wait_for(ensure_topics(settings), 30)
    consumer = make_consumer(settings, settings.topic, group_id=None)
    producer = make_producer(settings)
    await consumer.start()
    await producer.start()
    lags: list[float] = []
    total = int(rate * duration)
    try:
        await follow_from_end(consumer, "floor")

        async def consume() -> None:
            async for record in records(consumer, "floor"):
                lags.append(time.time() - float(record.value))
                if len(lags) >= total:
                    return

        reader = asyncio.create_task(consume())
        started = time.monotonic()
        sends = []
        for i in range(total):
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            # acks=all, as the platform publishes; the future resolves when Kafka has it
            sends.append(
                await producer.send(
                    settings.topic, str(time.time()).encode(), key=f"k{i % 4000}".encode()
                )
            )
        await asyncio.gather(*sends)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, 30)
    finally:
        await producer.stop()
        await consumer.stop()
    return Summary.of(lags)
