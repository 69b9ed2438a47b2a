"""The reconciler's fast lane: every change checked in every region shortly after it.

The full pass (:mod:`services.reconciler.reconcile`) finds anything the events
missed, within one interval. This follows the same event topic the relays
consume (from its end, no consumer group) and, ``delay`` seconds after each
event was published (longer than the relays' normal lag), asks every region
what it applied for that key, namespace or tag; a region behind gets the same
versioned repair as in a pass. So an event a relay dropped is repaired in about
``delay`` rather than one interval. What it cannot see (an event lost before it
reached Kafka, a region restored from an old snapshot) is the full pass's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from libs.common import events
from libs.common.errors import InvalidEvent
from libs.common.kafka import follow_from_end, make_consumer, records
from libs.common.metrics import Metrics
from libs.common.settings import KafkaSettings
from services.reconciler.reconcile import Change, Reconciler

log = logging.getLogger(__name__)

# what the consumer's fetches wait for new events (the relays use 20 ms: their lag)
FETCH_WAIT_MS = 200


@dataclass(order=True)
class _Due:
    at: float
    seq: int
    change: Change = field(compare=False)


class RecentChanges:
    """``start()`` / ``stop()`` own the consumer and the checking task."""

    def __init__(
        self,
        kafka: KafkaSettings,
        reconciler: Reconciler,
        metrics: Metrics,
        *,
        delay: float,
        batch: int = 512,
        max_pending: int = 200_000,
        tick: float = 0.1,
    ) -> None:
        self.kafka = kafka
        self.reconciler = reconciler
        self.metrics = metrics
        self.delay = delay
        self.batch = batch
        self.max_pending = max_pending
        self.tick = tick
        self.overflow = 0
        self._due: list[_Due] = []
        self._seq = itertools.count()
        self._consumer: AIOKafkaConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.positioned = False

    @property
    def ready(self) -> bool:
        return self.positioned and bool(self._tasks) and not any(t.done() for t in self._tasks)

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._consume(), name="recent-consume"),
            asyncio.create_task(self._check(), name="recent-check"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self._close_consumer()
        self.positioned = False

    async def _close_consumer(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(KafkaError, OSError):
                await self._consumer.stop()
            self._consumer = None

    async def _consume(self) -> None:
        delay = 0.5
        while self._consumer is None:
            # the checks wait half a second anyway: long fetch waits spare the broker
            lazy = self.kafka.model_copy(update={"fetch_max_wait_ms": FETCH_WAIT_MS})
            consumer = make_consumer(lazy, self.kafka.topic, group_id=None)
            try:
                await consumer.start()
                self._consumer = consumer
            except (KafkaError, OSError) as exc:  # Kafka away: the passes go on meanwhile
                log.warning("recent-change checks wait for Kafka: %r", exc)
                with contextlib.suppress(KafkaError, OSError):
                    await consumer.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        ends = await follow_from_end(self._consumer, "reconciler")
        log.info("reconciler checks recent changes of %s from offsets %s", self.kafka.topic, ends)
        self.positioned = True
        async for record in records(self._consumer, "reconciler"):
            self._take(record.value)

    def _take(self, raw: bytes | None) -> None:
        try:
            event = events.decode(raw)
        except InvalidEvent:
            return  # the relays dead-letter it; nothing to check
        if len(self._due) >= self.max_pending:
            self.overflow += 1  # the full pass still covers it
            return
        change = Change(event.ns, event.key if event.type == "key" else None, event.version)
        heapq.heappush(self._due, _Due(event.ts_ms / 1000 + self.delay, next(self._seq), change))

    async def _check(self) -> None:
        # a tick rather than a wake-up per event: the checks go in batches (a pipeline per
        # region each), which is what keeps them cheap at thousands of events a second
        while True:
            await asyncio.sleep(self.tick)
            now = time.time()
            while self._due and self._due[0].at <= now:
                batch: list[Change] = []
                while self._due and self._due[0].at <= now and len(batch) < self.batch:
                    batch.append(heapq.heappop(self._due).change)
                try:
                    repairs = await self.reconciler.check_changes(batch)
                except Exception:  # checking must never stop; the full pass covers it
                    log.exception("recent-change check failed")
                    continue
                self.metrics.reconciler_recent_checks.inc(len(batch))
                for region, count in repairs.items():
                    if count:
                        self.metrics.reconciler_repairs.labels(region).inc(count)
                        self.metrics.reconciler_recent_repairs.labels(region).inc(count)
