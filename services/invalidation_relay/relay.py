"""The relay: consume every event, apply it to this region's Redis, then commit.

Offsets are committed only after the events before them were applied, so a
relay that dies (even SIGKILL) resumes where it left off; what it re-reads is
re-applied harmlessly because applying is idempotent by version. A Redis
outage pauses the relay on the batch it could not apply (never skips it); a
malformed event (or one the API's limits refuse) is counted, logged once with
its offset, copied to the dead-letter topic, and passed over.

Each fetched batch of a partition is applied in one Redis round trip (a pipeline
of the events' scripts, in offset order; one per node on a cluster), so a relay
keeps up with a system of record's bursts. Each partition is applied by a worker
of its own while the consumer goes on fetching; a partition whose worker falls
behind (Redis refusing its batch, say) is paused until it caught up, so it holds
back only the events behind it in its partition, never the rest of the region's
events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import IllegalStateError, KafkaError

from libs.common import events
from libs.common.apply import apply_events
from libs.common.errors import ClientError, InvalidEvent, StoreUnavailable
from libs.common.events import DEFAULT_LIMITS, Event, Limits
from libs.common.kafka import make_consumer, make_producer
from libs.common.metrics import Metrics
from libs.common.settings import KafkaSettings
from libs.common.store import RegionStore

log = logging.getLogger(__name__)

# Turns a message of a non-mrcache topic (Debezium) into an event; None = nothing to do.
Decoder = Callable[[bytes | None], Event | None]
_RETRY_MAX = 2.0
# fetched batches a partition's worker may have waiting before the partition is paused
_PAUSE_AT = 4
# records one Redis round trip applies at most
_MAX_APPLY = 2000
# seconds between offset commits (and backlog reports): a commit after every small batch
# cost the relay and the broker more than applying the batch did at a few hundred events/s;
# what a crash leaves uncommitted is re-applied, idempotent by version
_COMMIT_EVERY = 0.5


class Relay:
    """Applies the event stream to one region; ``start()`` / ``stop()`` own its task."""

    def __init__(
        self,
        kafka: KafkaSettings,
        store: RegionStore,
        metrics: Metrics,
        *,
        region: str,
        group_id: str,
        drop_rate: float = 0.0,
        decoders: Mapping[str, Decoder] | None = None,
        max_batch: int = 500,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.kafka = kafka
        self.store = store
        self.metrics = metrics
        self.region = region
        self.group_id = group_id
        self.drop_rate = drop_rate
        self.decoders = dict(decoders or {})
        self.max_batch = max_batch
        self.limits = limits
        self._consumer: AIOKafkaConsumer | None = None
        # the worker applying each partition's fetched records, in order
        self._workers: dict[TopicPartition, _Worker] = {}
        self._dlq: AIOKafkaProducer | None = None
        # partitions' workers dead-letter concurrently: one producer, made once
        self._dlq_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        # next offset to commit per partition: only events already applied
        self._applied: dict[TopicPartition, int] = {}
        self._committing: asyncio.Task[None] | None = None
        self._last_commit = 0.0
        self._last_backlog = 0.0
        self._rng = random.Random()
        self.applied_total = 0

    @property
    def ready(self) -> bool:
        """Running and holding partitions (consumer-group join done)."""
        return (
            self._task is not None
            and not self._task.done()
            and self._consumer is not None
            and bool(self._consumer.assignment())
        )

    async def start(self) -> None:
        topics = [self.kafka.topic, *self.decoders]
        self._consumer = make_consumer(
            self.kafka, group_id=self.group_id, max_poll_records=self.max_batch
        )
        self._consumer.subscribe(topics, listener=_Revoked(self))
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"relay-{self.region}")

    async def stop(self) -> None:
        """Finish the batch in hand, commit it, leave the group."""
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 15)
            except TimeoutError:
                log.warning("relay did not drain in time; uncommitted events will be re-read")
            except Exception:
                log.exception("relay task failed")
            self._task = None
        if self._consumer is not None:
            with contextlib.suppress(KafkaError, OSError):
                await self._consumer.stop()
            self._consumer = None
        if self._dlq is not None:
            with contextlib.suppress(KafkaError, OSError):
                await self._dlq.stop()
            self._dlq = None

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self._stopping.is_set():
            try:
                batches = await consumer.getmany(timeout_ms=200, max_records=self.max_batch)
            except KafkaError as exc:
                log.warning("relay fetch failed, retrying: %r", exc)
                await asyncio.sleep(0.5)
                continue
            for tp, records in batches.items():
                worker = self._workers.get(tp)
                if worker is None:
                    worker = self._workers[tp] = _Worker(self, consumer, tp)
                worker.put(records)
            now = time.monotonic()
            if now - self._last_commit >= _COMMIT_EVERY:
                self._commit_soon(consumer)
            if now - self._last_backlog >= _COMMIT_EVERY:
                self._last_backlog = now
                await self._report_backlog(consumer)
        # the workers stop after the batch in hand; then the last offsets, after any
        # commit still in flight
        await asyncio.gather(*(w.finish() for w in self._workers.values()))
        if self._committing is not None:
            await self._committing
        if self._applied:
            await self._commit(consumer, self._applied)

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """Partitions leave this relay: stop their workers and commit what they applied;
        the next owner re-reads the rest (applying is idempotent)."""
        consumer = self._consumer
        workers = [self._workers.pop(tp) for tp in partitions if tp in self._workers]
        await asyncio.gather(*(w.cancel() for w in workers))
        done = {tp: offset for tp, offset in self._applied.items() if tp in partitions}
        for tp in done:
            del self._applied[tp]
        if consumer is not None and done:
            await self._commit(consumer, done)

    def _commit_soon(self, consumer: AIOKafkaConsumer) -> None:
        """Commit the applied offsets in the background, one commit in flight at a time.

        Awaiting each commit would add a broker round trip to every batch (80 ms
        across a 40 ms WAN link); offsets only ever move forward, so a later commit
        carries everything an earlier skipped one would have.
        """
        if not self._applied or (self._committing is not None and not self._committing.done()):
            return
        offsets, self._applied = self._applied, {}
        self._last_commit = time.monotonic()
        self._committing = asyncio.create_task(self._commit(consumer, offsets))

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # a rebalance took the partition: its next owner re-reads and re-applies
            log.warning("offset commit failed, events will be re-applied: %r", exc)

    async def _report_backlog(self, consumer: AIOKafkaConsumer) -> None:
        """Highwater minus position, from the consumer itself (the embedded broker
        cannot list group offsets), plus what the workers hold fetched."""
        backlog = sum(worker.pending for worker in self._workers.values())
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None:
                continue
            with contextlib.suppress(KafkaError, AssertionError, TimeoutError):
                backlog += max(0, high - await asyncio.wait_for(consumer.position(tp), 0.5))
        self.metrics.relay_backlog.labels(self.region).set(backlog)

    async def _apply(self, records: list[ConsumerRecord[bytes, bytes]]) -> bool:
        """Apply one partition's records, in order, in one Redis round trip; False only
        when stopping before they could be applied (none is committed then, and all are
        read and applied again by whoever resumes the partition)."""
        batch: list[Event] = []
        sources: list[ConsumerRecord[bytes, bytes]] = []
        skipped = dropped = 0
        for record in records:
            try:
                event = self._decode(record)
            except InvalidEvent as exc:
                await self._dead_letter(record, str(exc))
                continue
            if event is None:
                skipped += 1
            elif self.drop_rate and self._rng.random() < self.drop_rate:
                # fault drill: acknowledged without applying, for the reconciler to repair
                dropped += 1
            else:
                batch.append(event)
                sources.append(record)
        delay = 0.05
        while True:
            try:
                results = await apply_events(self.store, batch)
                break
            except StoreUnavailable as exc:
                if self._stopping.is_set():
                    return False
                log.warning(
                    "redis unavailable, a batch of %d events waits: %s", len(batch), exc.message
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)
        counts = {"skipped": skipped, "dropped": dropped, "applied": 0, "stale": 0}
        kinds: dict[str, int] = {}
        lag = self.metrics.invalidation_lag.labels(self.region)
        now = time.time()
        for event, record, result in zip(batch, sources, results, strict=True):
            if isinstance(result, ClientError):  # the store refused its numbers: never retried
                await self._dead_letter(record, result.message)
                continue
            counts["applied" if result else "stale"] += 1
            if result:
                kinds[event.type] = kinds.get(event.type, 0) + 1
            lag.observe(max(0.0, now - event.ts_ms / 1000))
        for outcome, n in counts.items():
            if n:
                self.metrics.relay_events.labels(self.region, outcome).inc(n)
        for kind, n in kinds.items():
            self.metrics.invalidations_applied.labels(self.region, kind).inc(n)
        self.applied_total += counts["applied"]
        return True

    def _decode(self, record: ConsumerRecord[bytes, bytes]) -> Event | None:
        decoder = self.decoders.get(record.topic)
        if decoder is not None:
            return decoder(record.value)
        return events.decode(record.value, self.limits)

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        self.metrics.invalid_events.labels(self.region).inc()
        self.metrics.relay_events.labels(self.region, "invalid").inc()
        log.warning(
            "invalid event at %s[%d]@%d sent to %s: %s",
            record.topic,
            record.partition,
            record.offset,
            self.kafka.dlq_topic,
            reason,
            extra={"topic": record.topic, "partition": record.partition, "offset": record.offset},
        )
        headers = [
            ("mrcache.error", reason.encode()[:1000]),
            ("mrcache.source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
            ("mrcache.region", self.region.encode()),
        ]
        for attempt in range(3):
            try:
                async with self._dlq_lock:
                    if self._dlq is None:
                        producer = make_producer(self.kafka)
                        await producer.start()
                        self._dlq = producer
                await asyncio.wait_for(
                    self._dlq.send_and_wait(
                        self.kafka.dlq_topic, record.value, key=record.key, headers=headers
                    ),
                    self.kafka.publish_timeout,
                )
                return
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning("dead-letter publish failed (attempt %d): %r", attempt + 1, exc)
                await asyncio.sleep(0.2 * (attempt + 1))
        log.error(
            "could not dead-letter %s[%d]@%d; it stays counted and logged",
            record.topic,
            record.partition,
            record.offset,
        )


class _Worker:
    """Applies one partition's records in offset order, each time everything fetched
    so far in one batch (so a worker that fell behind catches up in large round trips).

    The consumer goes on fetching the partition while its worker applies, so a new
    event never waits for the next fetch to include its partition; only when
    ``_PAUSE_AT`` batches wait (Redis slow or refusing) is the partition paused, until
    the worker has caught up."""

    def __init__(self, relay: Relay, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        self.relay = relay
        self.consumer = consumer
        self.tp = tp
        self._queue: list[list[ConsumerRecord[bytes, bytes]]] = []
        self._ready = asyncio.Event()
        self._paused = False
        self._task = asyncio.create_task(self._run(), name=f"relay-{tp.topic}-{tp.partition}")

    def put(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        self._queue.append(records)
        self._ready.set()
        if len(self._queue) >= _PAUSE_AT and not self._paused:
            self.consumer.pause(self.tp)
            self._paused = True

    @property
    def pending(self) -> int:
        """Records fetched and not applied yet."""
        return sum(len(batch) for batch in self._queue)

    async def _run(self) -> None:
        try:
            await self._loop()
        except Exception:
            # a bug, not bad input (that goes to the DLQ): never skip past it
            log.exception("relay worker of %s failed; its partition stops here", self.tp)
            raise

    async def _loop(self) -> None:
        relay = self.relay
        while True:
            await self._ready.wait()
            if not self._queue:  # woken to finish
                return
            # everything queued, up to a few fetches' worth: one round trip
            take = 1
            size = len(self._queue[0])
            while take < len(self._queue) and size + len(self._queue[take]) <= _MAX_APPLY:
                size += len(self._queue[take])
                take += 1
            batches, self._queue = self._queue[:take], self._queue[take:]
            if not self._queue:
                self._ready.clear()
            records = [record for batch in batches for record in batch]
            if not await relay._apply(records):
                return  # stopping while Redis is down: commit what was applied
            relay._applied[self.tp] = records[-1].offset + 1
            if self._paused and len(self._queue) < _PAUSE_AT // 2 + 1:
                self._paused = False
                with contextlib.suppress(IllegalStateError, KeyError):
                    if self.tp in self.consumer.assignment():
                        self.consumer.resume(self.tp)
            if relay._stopping.is_set():
                return

    async def finish(self) -> None:
        """Stop after the batch in hand (what is queued is read again by the next owner)."""
        self._queue.clear()
        self._ready.set()
        with contextlib.suppress(Exception):
            await self._task

    async def cancel(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


class _Revoked(ConsumerRebalanceListener):  # type: ignore[misc]
    """Hands revoked partitions to the relay before the group moves them."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.relay.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        return None
