"""The consistency meter: what clients of every region are served T seconds after each
invalidation.

It follows the event topic (and the Debezium topics the relays consume) from its
end, samples events by a hash of their id (a rerun over the same stream samples
the same events), turns each sampled invalidation into targets
(:mod:`services.meter.verdict`: the key of a key event; for a namespace or tag
invalidation, keys it saw written before it) and, at the event's broker
timestamp + T for each delay T, asks every region what it would serve for each
target (``POST /internal/v1/probe``: no fill, no refresh, no hot-key count), then
judges the answer: fresh, stale (an older version, or a copy or 404 the
invalidation voided), not cached (the region would serve nothing of its own), or
error. Checks of a key's home region are counted apart.

Each region has its own queue and its own requests in flight, so one slow or
hung region does not take checks from the others. A check that cannot be sent
within ``max_lateness`` of its time is skipped and counted late in its cell,
rather than measured at a longer delay than it claims; the lag of every check
that ran is recorded. Delays run from the record's Kafka timestamp (when it was
handed to the broker), so events an outbox published late are still checked;
how late they were published is reported too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import KafkaError

from libs.common import events
from libs.common.debezium import DebeziumMapping, to_event
from libs.common.errors import InvalidEvent
from libs.common.events import Event
from libs.common.kafka import LAZY_FETCH_MIN_BYTES, follow_from_end, make_consumer, records
from libs.common.metrics import Metrics
from libs.common.settings import KafkaSettings
from services.meter.report import Report, Tally, Window, delay_label, row_of
from services.meter.stats import stale_upper_bound
from services.meter.verdict import KINDS, Recent, Target, judge, targets

log = logging.getLogger(__name__)

DEFAULT_DELAYS = (1.0, 5.0, 60.0)
PROBE_PATH = "/internal/v1/probe"
# keys one probe request asks about (the route takes up to 500)
PROBE_BATCH = 200
# a region's worker waits this long for more due checks before sending a short batch:
# one request per check would cost the meter (and the region) a millisecond of CPU each
_LINGER = 0.05
# an event that reached the broker this long after its write was published late
_PUBLISHED_LATE_MS = 1000.0
_GAUGE_EVERY = 5.0


def sampled(event_id: str, rate: float) -> bool:
    """Whether the event is checked: a hash of its id below ``rate``, the same on every run."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(event_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < rate * 2**64


@dataclass(order=True, frozen=True)
class _Due:
    at: float
    seq: int
    delay: float = field(compare=False)
    targets: tuple[Target, ...] = field(compare=False)


class _Budget:
    """A token bucket of checks a second (0 = no limit), so a long run costs a bounded
    amount whatever the write rate."""

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.clock = clock
        self.tokens = rate
        self.at = clock()

    def take(self, n: int) -> bool:
        if self.rate <= 0:
            return True
        now = self.clock()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < n:
            return False
        self.tokens -= n
        return True


class Meter:
    """Samples invalidations and probes their keys in every region after each delay.

    ``start()`` / ``stop()`` own its tasks; ``ready`` once it follows the end of every
    partition (events published after that are seen).
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        region_urls: Mapping[str, str],
        *,
        metrics: Metrics | None = None,
        sample_rate: float = 0.1,
        invalidation_sample_rate: float = 1.0,
        delays: Sequence[float] = DEFAULT_DELAYS,
        concurrency: int = 8,
        timeout: float = 2.0,
        max_lateness: float = 0.5,
        window_seconds: float = 600.0,
        window_checks: int = 10_000,
        max_pending: int = 100_000,
        max_check_rate: float = 0.0,
        headers: Mapping[str, str] | None = None,
        home_of: Callable[[str, str], str | None] | None = None,
        debezium: Sequence[DebeziumMapping] = (),
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not region_urls:
            raise ValueError("the meter needs the URL of at least one region")
        if not delays or any(not d > 0 for d in delays):
            raise ValueError(f"delays must be positive seconds, got {list(delays)}")
        for name, rate in (
            ("sample_rate", sample_rate),
            ("invalidation", invalidation_sample_rate),
        ):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {rate}")
        self.kafka = kafka
        self.urls = {region: url.rstrip("/") for region, url in region_urls.items()}
        self.metrics = metrics or Metrics()
        self.sample_rate = sample_rate
        self.invalidation_sample_rate = invalidation_sample_rate
        self.delays = tuple(sorted(set(delays)))
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_lateness = max_lateness
        self.max_pending = max_pending
        self.headers = dict(headers or {})
        self.home_of = home_of
        self.debezium = {m.topic: m for m in debezium}
        self.clock = clock
        self.transport = transport
        # only events handed to the broker in [since_ms, until_ms] (epoch ms) are sampled;
        # earlier ones still tell which keys a namespace or tag holds (None: no bound)
        self.since_ms: int | None = None
        self.until_ms: int | None = None
        self.recent = Recent()
        self.tallies = {
            (r, d, home): Tally() for r in self.urls for d in self.delays for home in (False, True)
        }
        self.windows = {
            (r, d): Window(window_seconds, window_checks) for r in self.urls for d in self.delays
        }
        self.sampled: dict[str, int] = dict.fromkeys(KINDS, 0)
        self.overflow = 0
        self.shed = 0
        self.invalid_events = 0
        self.published_late = 0
        self.publish_lag_max_ms = 0.0
        self._budget = _Budget(max_check_rate, time.monotonic)
        self._due: list[_Due] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._queues: dict[str, deque[tuple[_Due, Target]]] = {r: deque() for r in self.urls}
        self._queued = {r: asyncio.Event() for r in self.urls}
        self._slots = {r: asyncio.Semaphore(concurrency) for r in self.urls}
        self._probes: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._http: httpx.AsyncClient | None = None
        self._positioned = False

    @property
    def ready(self) -> bool:
        """Following the end of every partition of the topics, with its tasks running."""
        return (
            self._positioned
            and bool(self._tasks)
            and not any(task.done() for task in self._tasks)
            and self._consumer is not None
            and bool(self._consumer.assignment())
        )

    @property
    def pending(self) -> int:
        """Checks waiting for their time, queued for a region, or running."""
        queued = sum(len(q) for q in self._queues.values())
        return sum(len(d.targets) for d in self._due) + queued + len(self._probes)

    async def start(self, *, follow: bool = True) -> None:
        """Start checking; with ``follow`` (the default) also follow the topics.

        Without it the caller feeds events through :meth:`offer`.
        """
        connections = self.concurrency * len(self.urls)
        self._http = httpx.AsyncClient(
            timeout=self.timeout,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            headers=self.headers,
            trust_env=False,
            transport=self.transport,
        )
        self._tasks = [
            asyncio.create_task(self._dispatch(), name="meter-dispatch"),
            asyncio.create_task(self._gauges(), name="meter-gauges"),
            *(asyncio.create_task(self._region(r), name=f"meter-region-{r}") for r in self.urls),
        ]
        if follow:
            # no consumer group: every meter sees every partition, from the end (seek below).
            # Checks run their delay after each event: fetches that wait up to a quarter
            # of the shortest one (at most 200 ms) spare the broker
            wait = max(self.kafka.fetch_max_wait_ms, min(200, int(min(self.delays) * 250)))
            lazy = self.kafka.model_copy(update={"fetch_max_wait_ms": wait})
            topics = [self.kafka.topic, *self.debezium]
            self._consumer = make_consumer(
                lazy, *topics, group_id=None, fetch_min_bytes=LAZY_FETCH_MIN_BYTES
            )
            try:
                await self._consumer.start()
            except BaseException:
                await self.stop()  # leave nothing running behind a failed start
                raise
            self._tasks.append(
                asyncio.create_task(self._consume(self._consumer), name="meter-consume")
            )

    async def wait_ready(self, timeout: float) -> None:
        """Until :attr:`ready`; ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not self.ready:
                for task in self._tasks:
                    if task.done():
                        task.result()  # raise what ended it
                await asyncio.sleep(0.02)

    async def drain(self, timeout: float) -> bool:
        """Wait until no check is waiting or running; False when ``timeout`` ran out first."""
        deadline = time.monotonic() + timeout
        while self.pending:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def stop(self) -> None:
        for task in [*self._tasks, *self._probes]:
            task.cancel()
        for task in [*self._tasks, *self._probes]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        self._probes.clear()
        if self._consumer is not None:
            with contextlib.suppress(KafkaError, OSError):
                await self._consumer.stop()
            self._consumer = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        self._positioned = False

    def report(self) -> Report:
        now = time.monotonic()
        rows = []
        for home in (False, True):
            for region in self.urls:
                for delay in self.delays:
                    window = None if home else self.windows[region, delay]
                    if window is not None:
                        window.prune(now)
                    rows.append(
                        row_of(region, delay, home, self.tallies[region, delay, home], window)
                    )
        return Report(
            sample_rate=self.sample_rate,
            delays=self.delays,
            sampled={k: v for k, v in self.sampled.items() if v},
            overflow=self.overflow,
            shed=self.shed,
            invalid_events=self.invalid_events,
            published_late=self.published_late,
            publish_lag_max_ms=self.publish_lag_max_ms,
            pending=self.pending,
            rows=tuple(rows),
        )

    # -- consuming -------------------------------------------------------------------------

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        ends = await follow_from_end(consumer, "meter")
        log.info("meter follows %s from offsets %s", [self.kafka.topic, *self.debezium], ends)
        self._positioned = True
        async for record in records(consumer, "meter"):
            self._take(record)

    def _take(self, record: ConsumerRecord[bytes, bytes]) -> None:
        appended = float(record.timestamp) if record.timestamp is not None else None
        mapping = self.debezium.get(record.topic)
        if mapping is not None:
            try:
                event = to_event(mapping, record.value)
            except InvalidEvent:
                self.invalid_events += 1
                return
            if event is not None:
                self.offer(event, appended_ms=appended, debezium=True)
            return
        # most events are not sampled: a look at a few fields spares validating them all,
        # which at a system of record's burst rate would cost the meter a core
        try:
            head = orjson.loads(record.value) if record.value is not None else None
        except orjson.JSONDecodeError:
            self.invalid_events += 1
            return
        if isinstance(head, dict):
            kind, event_id = head.get("type"), head.get("id")
            ns, key, tags = head.get("ns"), head.get("key"), head.get("tags")
            if (
                kind == "key"
                and head.get("op") == "set"
                and isinstance(ns, str)
                and isinstance(key, str)
            ):
                listed = tags if isinstance(tags, list) else []
                self.recent.saw(ns, key, tuple(t for t in listed if isinstance(t, str)))
            rate = self.sample_rate if kind == "key" else self.invalidation_sample_rate
            if isinstance(event_id, str) and not sampled(event_id, rate):
                return
        try:
            event = events.decode(record.value)
        except InvalidEvent:
            self.invalid_events += 1
            return
        self.offer(event, appended_ms=appended)

    def offer(
        self, event: Event, *, appended_ms: float | None = None, debezium: bool = False
    ) -> bool:
        """Schedule the checks of an invalidation if it is sampled; whether it was.
        ``appended_ms``: when the broker got it (its record's timestamp); by default the
        event's own time."""
        rate = self.sample_rate if event.type == "key" else self.invalidation_sample_rate
        if not sampled(event.id, rate):
            return False
        at_ms = float(event.ts_ms) if appended_ms is None else appended_ms
        if self.until_ms is not None and at_ms > self.until_ms:
            return False
        if self.since_ms is not None and at_ms < self.since_ms:
            return False
        lag = at_ms - event.ts_ms
        if lag > _PUBLISHED_LATE_MS and not debezium:
            self.published_late += 1
            self.publish_lag_max_ms = max(self.publish_lag_max_ms, lag)
        found = targets(event, self.recent, self._home(event), debezium=debezium)
        if not found:
            return False
        kind = found[0].kind
        self.sampled[kind] += 1
        self.metrics.meter_sampled.labels(kind).inc()
        if not self._budget.take(len(found) * len(self.delays)):
            self.shed += len(found) * len(self.delays)
            for delay in self.delays:
                self.metrics.meter_skipped.labels(delay_label(delay), "shed").inc(len(found))
            return False
        for delay in self.delays:
            if len(self._due) >= self.max_pending:
                self.overflow += len(found)
                self.metrics.meter_skipped.labels(delay_label(delay), "overflow").inc(len(found))
                continue
            heapq.heappush(
                self._due, _Due(at_ms / 1000 + delay, next(self._seq), delay, tuple(found))
            )
        self._wake.set()
        return True

    def _home(self, event: Event) -> Callable[[str, str], str | None]:
        if self.home_of is not None:
            return self.home_of
        origin = event.origin if event.type == "key" and event.origin in self.urls else None
        return lambda _ns, _key: origin

    # -- checking --------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        """Hand each check to every region's queue when its time comes."""
        while True:
            self._wake.clear()
            if not self._due:
                await self._wake.wait()
                continue
            wait = self._due[0].at - self.clock()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                continue
            due = heapq.heappop(self._due)
            for region, queue in self._queues.items():
                for target in due.targets:
                    if len(queue) >= self.max_pending:
                        self._skip(region, due, target, "overflow")
                        continue
                    queue.append((due, target))
                self._queued[region].set()

    async def _region(self, region: str) -> None:
        """Send one region's due checks in batches, ``concurrency`` requests at a time."""
        queue, queued, slots = self._queues[region], self._queued[region], self._slots[region]
        while True:
            if not queue:
                queued.clear()
                await queued.wait()
                continue
            await slots.acquire()
            if len(queue) < PROBE_BATCH:
                await asyncio.sleep(_LINGER)
            now = self.clock()
            batch: list[tuple[_Due, Target]] = []
            while queue and len(batch) < PROBE_BATCH:
                due, target = queue.popleft()
                if now - due.at > self.max_lateness:
                    self._skip(region, due, target, "late")
                else:
                    batch.append((due, target))
            if not batch:
                slots.release()
                continue
            task = asyncio.create_task(self._probe(region, batch, now))
            self._probes.add(task)
            task.add_done_callback(_release_when_done(self._probes, slots))

    def _skip(self, region: str, due: _Due, target: Target, reason: str) -> None:
        self.tallies[region, due.delay, target.home == region].late += 1
        if reason == "overflow":
            self.overflow += 1
        self.metrics.meter_skipped.labels(delay_label(due.delay), reason).inc()

    async def _probe(self, region: str, batch: list[tuple[_Due, Target]], sent: float) -> None:
        answers = await self._ask(region, [t for _, t in batch])
        now = time.monotonic()
        for (due, target), answer in zip(batch, answers, strict=True):
            verdict = judge(target, answer)
            home = target.home == region
            lag_ms = max(0.0, (sent - due.at) * 1000)
            self.tallies[region, due.delay, home].add(verdict, target.kind, lag_ms)
            if home:
                continue
            label = delay_label(due.delay)
            self.metrics.meter_checks.labels(region, label, verdict).inc()
            window = self.windows[region, due.delay]
            window.add(now, verdict)
            ratio, errors = window.fresh_ratio(), window.error_ratio()
            self.metrics.meter_freshness.labels(region, label).set(
                math.nan if ratio is None else ratio
            )
            self.metrics.meter_error_ratio.labels(region, label).set(
                math.nan if errors is None else errors
            )

    async def _ask(self, region: str, batch: list[Target]) -> list[Mapping[str, Any] | None]:
        """The region's probe answers, in order; None each when it gave no usable answer."""
        assert self._http is not None
        body = {"items": [{"ns": t.ns, "key": t.key} for t in batch]}
        try:
            response = await self._http.post(self.urls[region] + PROBE_PATH, json=body)
            items = response.json().get("items") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            items = None
        if not isinstance(items, list) or len(items) != len(batch):
            return [None] * len(batch)
        return [item if isinstance(item, dict) else None for item in items]

    async def _gauges(self) -> None:
        """The stale-rate bounds, recomputed every few seconds (too dear for every check)."""
        while True:
            await asyncio.sleep(_GAUGE_EVERY)
            for (region, delay, home), tally in self.tallies.items():
                if home:
                    continue
                served = tally.counts["fresh"] + tally.counts["stale"]
                bound = stale_upper_bound(tally.counts["stale"], served)
                self.metrics.meter_stale_bound.labels(region, delay_label(delay)).set(
                    math.nan if bound is None else bound
                )


def _release_when_done(
    tasks: set[asyncio.Task[None]], slots: asyncio.Semaphore
) -> Callable[[asyncio.Task[None]], None]:
    def done(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("meter probe failed", exc_info=task.exception())

    return done


async def measure(
    meter: Meter,
    *,
    duration: float,
    ready_timeout: float = 30.0,
    on_ready: Callable[[], None] | None = None,
) -> Report:
    """One-shot: measure the events published during ``duration`` seconds, then report.

    Waits for the last checks (the largest delay after the window closes); checks
    still pending after that are left out of the report (``pending``).
    """
    await meter.start()
    try:
        await meter.wait_ready(ready_timeout)
        meter.until_ms = events.now_ms() + int(duration * 1000)
        if on_ready is not None:
            on_ready()
        # events of the window's last moment may reach the meter a little later
        await asyncio.sleep(duration + meter.max_lateness)
        await meter.drain(max(meter.delays) + meter.max_lateness + 2 * meter.timeout + 5.0)
        return meter.report()
    finally:
        await meter.stop()
