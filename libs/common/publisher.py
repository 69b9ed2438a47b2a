"""Publishing events with no silent loss (guarantee 6): Kafka, else the outbox.

A change is acknowledged only after its event is either accepted by Kafka
(``acks=all``) or appended to the region's outbox, a Redis list. One drainer at
a time per region (a Redis lock with a token) sends the outbox to Kafka oldest
first and trims only what Kafka accepted, so a crash mid-drain re-sends rather
than loses (events are idempotent by version, duplicates are harmless).

The lock is a lease: a drainer that is slow (a slow or distant broker) can
outlive it while another process takes the lock over and drains the same events.
So the drainer renews the lock while it sends, checking it still owns it, and
trims in one script that checks ownership at the moment of the trim: a drainer
that lost the lock trims nothing, and only the owner's trim removes what both
sent. Whatever was sent twice is a duplicate, never a loss.

While the outbox holds anything, new events join its tail instead of going
straight to Kafka, so the region's events still reach Kafka in the order their
changes were applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable

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
# a drain batch may take this many publish timeouts before it is given up (and sent again)
_BATCH_TIMEOUTS = 5
_LOCK_MS = 10_000
# seconds stop() waits for the drain task to end once cancelled
_STOP_WAIT = 5.0

# renew the drain lock, only while it is ours
_RENEW = """#!lua flags=allow-oom
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
# trim what was sent from the outbox's head, only while the drain lock is ours; returns the
# outbox's length after the trim, or -1 when the lock is another's (nothing trimmed)
_TRIM = """#!lua flags=allow-oom
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
redis.call('LTRIM', KEYS[1], ARGV[2], -1)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return redis.call('LLEN', KEYS[1])
"""


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
        lock_ms: int = _LOCK_MS,
        fanout: Callable[[bytes], None] | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.region = region
        self.metrics = metrics
        self.drain_interval = drain_interval
        self.lock_ms = lock_ms
        # also hands each encoded event to this (the push to other regions), never waiting
        self.fanout = fanout
        self._producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()
        self._outbox_key = keys.outbox(region)
        self._lock_key = keys.outbox_lock(region)
        self._token = uuid.uuid4().hex
        self._outbox_active = False
        self._wake = asyncio.Event()
        self._drain_task: asyncio.Task[None] | None = None
        self._release = redis.register_script(RELEASE)
        self._renew = redis.register_script(_RENEW)
        self._trim = redis.register_script(_TRIM)

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
            # a send stuck inside the Kafka client may not end at once on cancel: stopping
            # must not hang on it (what it had not trimmed stays in the outbox)
            done, _ = await asyncio.wait({self._drain_task}, timeout=_STOP_WAIT)
            if not done:
                log.warning("outbox drainer still busy %.0f s after stop; left behind", _STOP_WAIT)
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
        if self.fanout is not None:
            self.fanout(payload)
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
        if not await self.redis.set(self._lock_key, self._token, nx=True, px=self.lock_ms):
            held = await self.redis.get(self._lock_key)
            if held != self._token.encode():
                return
        try:
            while await self._owned():
                batch = await self.redis.lrange(self._outbox_key, 0, _DRAIN_BATCH - 1)
                if not batch:
                    self._outbox_active = False
                    self.metrics.outbox_depth.labels(self.region).set(0)
                    return
                await self._send_batch([p if isinstance(p, bytes) else p.encode() for p in batch])
                depth = await self._trim(
                    keys=[self._outbox_key, self._lock_key],
                    args=[self._token, len(batch), self.lock_ms],
                )
                if depth < 0:
                    log.warning("outbox: drain lock lost before the trim; nothing trimmed")
                    return
                log.info("outbox: %d events sent to kafka", len(batch))
                self.metrics.outbox_depth.labels(self.region).set(depth)
        finally:
            await self._release(keys=[self._lock_key], args=[self._token])

    async def _owned(self) -> bool:
        """Renew the drain lock if it is still ours."""
        return bool(await self._renew(keys=[self._lock_key], args=[self._token, self.lock_ms]))

    async def _send_batch(self, payloads: list[bytes]) -> None:
        """Send a batch of queued events at once and return when Kafka accepted them all:
        a round trip per batch, not per event, so an outbox drains faster than writes fill
        it even over a slow link. Kafka keeps each partition's order; a batch that fails
        is sent again whole (events are idempotent by version)."""
        queued: list[tuple[events.Event, bytes]] = []
        for payload in payloads:
            try:
                queued.append((events.decode(payload), payload))
            except InvalidEvent as exc:
                # only this module writes the outbox; a bad entry is logged and skipped
                log.error("dropping undecodable outbox entry: %s", exc)

        async def send_all() -> None:
            producer = await self._ensure_producer()
            sent = [
                await producer.send(self.settings.topic, payload, key=event.kafka_key)
                for event, payload in queued
            ]
            await asyncio.gather(*sent)

        await asyncio.wait_for(send_all(), self.settings.publish_timeout * _BATCH_TIMEOUTS)
        for event, _ in queued:
            self.metrics.invalidations_published.labels(self.region, event.type).inc()
