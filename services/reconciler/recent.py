"""The reconciler's fast lane: every change checked in every region shortly after it.

The full pass (:mod:`services.reconciler.reconcile`) finds anything the events
missed, within one interval. This follows the same event topic the relays
consume (from its end, no consumer group) and, ``delay`` seconds after each
event was published (longer than the relays' normal lag), asks every region
what it applied for that key, namespace or tag; a region behind gets the same
versioned repair as in a pass. So an event a relay dropped is repaired in about
``delay`` rather than one interval. What it cannot see (an event lost before it
reached Kafka, a region restored from an old snapshot) is the full pass's job.

At high rates it must neither fall behind nor multiply the load. Checks go in
batches (a pipeline per region). Repairs are capped at ``repair_rate`` keys a
second: a burst the relays are still applying (a backfill of a million rows)
finds every region "behind" on every key, and repairing those would only race
the relays. A key found behind past the cap is looked at again later, after
``delay`` times 2, 4, 8, 16; by then its relay has usually applied it, and if not it
is repaired then. What is still behind after the last look, or does not fit in
``max_pending``, is shed: counted (``mrcache_reconciler_recent_shed_total``) and
left to the next full pass.
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
from libs.common.kafka import LAZY_FETCH_MIN_BYTES, follow_from_end, make_consumer, records
from libs.common.metrics import Metrics
from libs.common.settings import KafkaSettings
from services.reconciler.reconcile import Change, Reconciler

log = logging.getLogger(__name__)

# what the consumer's fetches wait for new events (the relays use 20 ms: their lag)
FETCH_WAIT_MS = 200


# looks at a key found behind past the repair cap before it is shed: after delay * 2..16
_LOOKS = 4


@dataclass(order=True)
class _Due:
    at: float
    seq: int
    change: Change = field(compare=False)
    # how many times it was already found behind and deferred
    looks: int = field(default=0, compare=False)


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
        repair_rate: float = 500.0,
    ) -> None:
        self.kafka = kafka
        self.reconciler = reconciler
        self.metrics = metrics
        self.delay = delay
        self.batch = batch
        self.max_pending = max_pending
        self.tick = tick
        self.repair_rate = repair_rate
        # keys that may still be repaired now (a token bucket of repair_rate a second)
        self._tokens = repair_rate
        self.overflow = 0
        self.deferred = 0
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
            consumer = make_consumer(
                lazy, self.kafka.topic, group_id=None, fetch_min_bytes=LAZY_FETCH_MIN_BYTES
            )
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
            self._shed(1)  # the full pass still covers it
            return
        change = Change(event.ns, event.key if event.type == "key" else None, event.version)
        heapq.heappush(self._due, _Due(event.ts_ms / 1000 + self.delay, next(self._seq), change))

    async def _check(self) -> None:
        # a tick rather than a wake-up per event: the checks go in batches (a pipeline per
        # region each), which is what keeps them cheap at thousands of events a second
        while True:
            await asyncio.sleep(self.tick)
            self._tokens = min(self.repair_rate, self._tokens + self.repair_rate * self.tick)
            now = time.time()
            while self._due and self._due[0].at <= now:
                batch: list[_Due] = []
                while self._due and self._due[0].at <= now and len(batch) < self.batch:
                    batch.append(heapq.heappop(self._due))
                budget = int(self._tokens)
                try:
                    checked = await self.reconciler.check_changes(
                        [due.change for due in batch], budget=budget
                    )
                except Exception:  # checking must never stop; the full pass covers it
                    log.exception("recent-change check failed")
                    continue
                self.metrics.reconciler_recent_checks.inc(len(batch))
                self._tokens -= checked.behind - len(checked.deferred)
                self._defer(batch, checked.deferred, now)
                for region, count in checked.repairs.items():
                    if count:
                        self.metrics.reconciler_repairs.labels(region).inc(count)
                        self.metrics.reconciler_recent_repairs.labels(region).inc(count)

    def _defer(self, batch: list[_Due], deferred: list[Change], now: float) -> None:
        """Look again later at the keys found behind past the repair cap; shed the ones
        already looked at ``_LOOKS`` times (the full pass covers them)."""
        if not deferred:
            return
        looks = {(due.change.ns, due.change.key): due.looks for due in batch}
        shed = 0
        for change in deferred:
            n = looks.get((change.ns, change.key), 0) + 1
            if n > _LOOKS or len(self._due) >= self.max_pending:
                shed += 1
                continue
            self.deferred += 1
            self.metrics.reconciler_recent_deferred.inc()
            at = now + self.delay * 2**n
            heapq.heappush(self._due, _Due(at, next(self._seq), change, n))
        self._shed(shed)

    def _shed(self, n: int) -> None:
        if n:
            self.overflow += n
            self.metrics.reconciler_recent_shed.inc(n)
