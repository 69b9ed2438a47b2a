"""Publishing events with no silent loss (guarantee 6): Kafka, else the outbox.

A change is acknowledged only after its event is either accepted by Kafka
(``acks=all``) or appended to the region's outbox, a Redis list. One drainer at
a time per region (a Redis lock with a token) sends the outbox to Kafka oldest
first and trims only what Kafka accepted, so a crash mid-drain re-sends rather
than loses (events are idempotent by version, duplicates are harmless).

While the outbox holds anything, new events join its tail instead of going
straight to Kafka, so the region's events still reach Kafka in the order their
changes were applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from libs.common import events, keys
from libs.common.errors import InvalidEvent, StoreUnavailable
from libs.common.kafka import make_producer
from libs.common.metrics import Metrics
from libs.common.redisclient import RedisClient
from libs.common.scripts import RELEASE
from libs.common.settings import KafkaSettings

log = logging.getLogger(__name__)

_DRAIN_BATCH = 200
_LOCK_MS = 10_000


class EventPublisher:
    """Publishes events of one region; ``start()`` / ``stop()`` own its tasks."""

    def __init__(
        self,
        settings: KafkaSettings,
        redis: RedisClient,
        *,
        region: str,
        metrics: Metrics,
        drain_interval: float = 0.5,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.region = region
        self.metrics = metrics
        self.drain_interval = drain_interval
        self._producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()
        self._outbox_key = keys.outbox(region)
        self._lock_key = keys.outbox_lock(region)
        self._token = uuid.uuid4().hex
        self._outbox_active = False
        self._wake = asyncio.Event()
        self._drain_task: asyncio.Task[None] | None = None
        self._release = redis.register_script(RELEASE)

    async def start(self) -> None:
        # Kafka may be down at startup: the outbox covers it and the drainer retries.
        try:
            await self._ensure_producer()
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("kafka unreachable at startup, events go to the outbox: %s", exc)
        self._drain_task = asyncio.create_task(self._drain_loop(), name="outbox-drain")

    async def stop(self) -> None:
        if self._drain_task is not None:
            self._drain_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain_task
            self._drain_task = None
        with contextlib.suppress(RedisError):
            await self._release(keys=[self._lock_key], args=[self._token])
        if self._producer is not None:
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await asyncio.wait_for(self._producer.stop(), 5)
            self._producer = None

    @property
    def outbox_active(self) -> bool:
        return self._outbox_active

    async def publish(self, event: events.Event) -> None:
        """Return once the event is durable in Kafka or in the outbox."""
        payload = events.encode(event)
        if not self._outbox_active:
            try:
                await self._send(event.kafka_key, payload)
                self.metrics.invalidations_published.labels(self.region, event.type).inc()
                return
            except (KafkaError, OSError, TimeoutError) as exc:
                self.metrics.publish_failures.labels(self.region).inc()
                log.warning(
                    "publish to kafka failed, event %s goes to the outbox: %r", event.id, exc
                )
                self._outbox_active = True
        try:
            depth = await self.redis.rpush(self._outbox_key, payload)
        except RedisError as exc:
            raise StoreUnavailable(
                "neither kafka nor the region's outbox accepted the event"
            ) from exc
        self.metrics.outbox_events.labels(self.region).inc()
        self.metrics.outbox_depth.labels(self.region).set(depth)
        self._wake.set()

    async def kafka_ready(self, timeout: float = 1.0) -> bool:
        """Whether the broker answers a metadata request now."""
        try:
            producer = await asyncio.wait_for(self._ensure_producer(), timeout)
            await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout)
        except (KafkaError, OSError, TimeoutError):
            return False
        return True

    async def _ensure_producer(self) -> AIOKafkaProducer:
        async with self._producer_lock:
            if self._producer is None:
                producer = make_producer(self.settings)
                try:
                    await asyncio.wait_for(producer.start(), self.settings.publish_timeout * 2)
                except BaseException:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def _send(self, key: bytes, payload: bytes) -> None:
        async def send() -> None:
            producer = await self._ensure_producer()
            await producer.send_and_wait(self.settings.topic, payload, key=key)

        await asyncio.wait_for(send(), self.settings.publish_timeout)

    async def _drain_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.drain_interval)
            self._wake.clear()
            try:
                await self._drain_once()
            except (KafkaError, OSError, TimeoutError) as exc:
                log.info("outbox drain paused, kafka still unreachable: %r", exc)
            except RedisError as exc:
                log.warning("outbox drain paused, redis unreachable: %r", exc)

    async def _drain_once(self) -> None:
        """Send the outbox oldest first while holding the region's drain lock."""
        if not await self.redis.set(self._lock_key, self._token, nx=True, px=_LOCK_MS):
            held = await self.redis.get(self._lock_key)
            if held != self._token.encode():
                return
        try:
            while True:
                await self.redis.pexpire(self._lock_key, _LOCK_MS)
                batch = await self.redis.lrange(self._outbox_key, 0, _DRAIN_BATCH - 1)
                if not batch:
                    self._outbox_active = False
                    self.metrics.outbox_depth.labels(self.region).set(0)
                    return
                for payload in batch:
                    await self._send_queued(
                        payload if isinstance(payload, bytes) else payload.encode()
                    )
                await self.redis.ltrim(self._outbox_key, len(batch), -1)
                log.info("outbox: %d events sent to kafka", len(batch))
                self.metrics.outbox_depth.labels(self.region).set(
                    await self.redis.llen(self._outbox_key)
                )
        finally:
            await self._release(keys=[self._lock_key], args=[self._token])

    async def _send_queued(self, payload: bytes) -> None:
        try:
            event = events.decode(payload)
        except InvalidEvent as exc:
            # only this module writes the outbox; a bad entry is logged and skipped
            log.error("dropping undecodable outbox entry: %s", exc)
            return
        await self._send(event.kafka_key, payload)
        self.metrics.invalidations_published.labels(self.region, event.type).inc()
