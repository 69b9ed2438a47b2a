"""Kafka clients built from :class:`KafkaSettings` (security and idempotence included)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from libs.common.settings import KafkaSettings


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap,
        "security_protocol": settings.security_protocol,
        "request_timeout_ms": settings.request_timeout_ms,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        opts["ssl_context"] = ssl.create_default_context()
    if settings.security_protocol.startswith("SASL"):
        opts["sasl_mechanism"] = settings.sasl_mechanism or "PLAIN"
        opts["sasl_plain_username"] = settings.sasl_username
        if settings.sasl_password is not None:
            opts["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return opts


log = logging.getLogger(__name__)


async def follow_from_end(consumer: AIOKafkaConsumer, what: str) -> dict[int, int]:
    """Hold every partition of a group-less consumer and move to its end, so only events
    published from now on are read; returns the offsets it starts from.

    Positions are resolved first (to the consumer's default) so the seek to the end
    is not overtaken by the initial reset, then resolved again after the seek.
    """
    delay = 0.05
    while True:
        if consumer.assignment():
            try:
                partitions: list[TopicPartition] = sorted(consumer.assignment())
                for tp in partitions:
                    await consumer.position(tp)
                await consumer.seek_to_end(*partitions)
                return {tp.partition: await consumer.position(tp) for tp in partitions}
            except KafkaError as exc:  # a reassignment meanwhile, or the broker away
                log.warning("%s could not position on the topic's end: %r", what, exc)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


async def records(consumer: AIOKafkaConsumer, what: str) -> AsyncIterator[ConsumerRecord[Any, Any]]:
    """Every record the consumer fetches, forever; a failed fetch is logged and retried."""
    while True:
        try:
            batches = await consumer.getmany(timeout_ms=200, max_records=1000)
        except KafkaError as exc:
            log.warning("%s fetch failed, retrying: %r", what, exc)
            await asyncio.sleep(0.5)
            continue
        for batch in batches.values():
            for record in batch:
                yield record


def make_producer(settings: KafkaSettings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=settings.enable_idempotence,
        linger_ms=settings.linger_ms,
    )


# what a consumer that follows the topic at its leisure (the meter, the reconciler's recent
# lane: both look at an event half a second or more after it) asks each fetch to bring:
# with the default of one byte a busy topic answers every fetch at once, and each fetch of
# a few records costs the broker and the consumer far more than the records do
LAZY_FETCH_MIN_BYTES = 256 * 1024


def make_consumer(
    settings: KafkaSettings, *topics: str, group_id: str | None, **extra: Any
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        **client_options(settings),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        **extra,
    )


async def ensure_topics(
    settings: KafkaSettings, *, partitions: int = 12, extra: Sequence[str] = ()
) -> None:
    """Create the event and dead-letter topics (and ``extra`` ones) when missing.

    Production clusters usually create topics through their own tooling; the
    local platform and the tests call this before any service starts, so the
    relays of every region see the same partitions from the first event.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, num_partitions=partitions, replication_factor=1)
            for name in dict.fromkeys((settings.topic, settings.dlq_topic, *extra))
            if name not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
    finally:
        await admin.close()
