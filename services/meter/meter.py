"""The consistency meter: how fresh every region reads T seconds after a write.

It follows the event topic from its end (it measures new writes), samples key
events by a hash of their id (so a rerun over the same stream samples the same
events), and at ``event.ts_ms + T`` for each configured delay T reads the key
in every region with a plain ``GET``, as a client would. A region is

* *fresh* when it does not serve an older version than the event's: a 200 whose
  ``ETag`` version is at least the event's, or a 404 (missing is never stale:
  the key may be deleted, expired, or simply not cached);
* *stale* when it answers 200 with an older ``ETag`` version;
* *error* on anything else (5xx, timeouts, refused connections): counted on its
  own, never in the fraction.

The read carries ``Cache-Control: only-if-cached``: a region answers from what it
holds, or 504 when it holds no valid copy, and never fills from the home region
for the meter, so measuring does not change what is measured. No
``min_version`` (that would force a fresh answer) and no conditional headers.

A check that cannot start within ``max_lateness`` seconds of its time (the
meter consumed the event late, or too many checks were due at once) is skipped
and counted as *late* rather than measured at a longer delay than it claims.
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
from typing import Any, Literal

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import KafkaError

from libs.common import events
from libs.common.errors import InvalidEvent, InvalidVersion
from libs.common.events import Event
from libs.common.kafka import follow_from_end, make_consumer, records
from libs.common.metrics import Metrics
from libs.common.naming import path_segment
from libs.common.settings import KafkaSettings
from libs.common.versions import parse_version

log = logging.getLogger(__name__)

Result = Literal["fresh", "stale", "error"]
RESULTS: tuple[Result, ...] = ("fresh", "stale", "error")
DEFAULT_DELAYS = (1.0, 5.0, 60.0)
TABLE_HEADERS = ("REGION", "DELAY", "CHECKS", "FRESH", "STALE", "ERRORS", "FRESH %", "NINES")
_RETRY_MAX = 2.0


# --- arithmetic (pure) --------------------------------------------------------------------


def sampled(event_id: str, rate: float) -> bool:
    """Whether the event is checked: a hash of its id below ``rate``, the same on every run."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(event_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < rate * 2**64


_ONLY_IF_CACHED = {"Cache-Control": "only-if-cached"}


def classify(status: int | None, etag: str | None, version: int) -> Result:
    """One region's answer to a read of a key whose event carries ``version``.

    ``status`` is None when no answer came (timeout, connection refused).
    """
    if status == 200:
        if etag is None:
            return "error"
        try:
            held = parse_version(etag, what="ETag")
        except InvalidVersion:
            return "error"
        return "fresh" if held >= version else "stale"
    # 404: deleted, expired or absent; 504: not cached here (only-if-cached) — neither
    # serves an older version
    if status in (404, 504):
        return "fresh"
    return "error"


def fresh_ratio(fresh: int, stale: int) -> float | None:
    """Fresh among fresh and stale (errors count in neither); None with nothing counted."""
    counted = fresh + stale
    return fresh / counted if counted else None


def nines(fresh: int, stale: int) -> float | None:
    """``-log10(1 - fraction fresh)``; ``inf`` when nothing was stale, None with no data."""
    counted = fresh + stale
    if not counted:
        return None
    if not stale:
        return math.inf
    return max(0.0, -math.log10(stale / counted))  # never -0.0


def nines_resolution(fresh: int, stale: int) -> float:
    """The most nines ``fresh + stale`` checks can show: one stale in them gives this many."""
    return math.log10(fresh + stale) if fresh + stale else 0.0


def format_percent(fresh: int, stale: int) -> str:
    """``99.76%``; ``100%`` only when nothing was stale (never rounded up to it)."""
    ratio = fresh_ratio(fresh, stale)
    if ratio is None:
        return "-"
    if not stale:
        return "100%"
    percent = 100 * ratio
    for digits in range(2, 10):
        text = f"{percent:.{digits}f}"
        if float(text) < 100:
            return f"{text}%"
    return f"{percent!r}%"


def format_nines(fresh: int, stale: int) -> str:
    """``2.6 nines``; ``≥ 2.6 nines`` when every check was fresh (the sample's resolution)."""
    value = nines(fresh, stale)
    if value is None:
        return "-"
    if math.isinf(value):
        bound = math.floor(nines_resolution(fresh, stale) * 10) / 10
        return f"≥ {bound:.1f} nines"
    return f"{value:.1f} nines"


def format_delay(delay: float) -> str:
    return f"{delay:g} s"


def delay_label(delay: float) -> str:
    """The ``delay`` label of the meter's metrics, as in ``1s``."""
    return f"{delay:g}s"


def key_path(ns: str, key: str) -> str:
    return f"/v1/ns/{path_segment(ns)}/keys/{path_segment(key)}"


# --- results ------------------------------------------------------------------------------


@dataclass
class Tally:
    """Results of one region at one delay since the meter started."""

    fresh: int = 0
    stale: int = 0
    errors: int = 0
    # fresh answers the region filled from the key's home region for this very read
    misses: int = 0

    def add(self, result: Result, *, miss: bool = False) -> None:
        if result == "fresh":
            self.fresh += 1
            self.misses += miss
        elif result == "stale":
            self.stale += 1
        else:
            self.errors += 1


class Window:
    """Fresh and stale results of the last ``seconds``, at most ``size`` of them."""

    def __init__(self, seconds: float, size: int) -> None:
        self.seconds = seconds
        self.size = size
        self._items: deque[tuple[float, bool]] = deque()
        self.fresh = 0

    def add(self, now: float, fresh: bool) -> None:
        self._items.append((now, fresh))
        self.fresh += fresh
        while len(self._items) > self.size:
            self._pop()
        self.prune(now)

    def prune(self, now: float) -> None:
        while self._items and self._items[0][0] < now - self.seconds:
            self._pop()

    def ratio(self) -> float | None:
        return self.fresh / len(self._items) if self._items else None

    def __len__(self) -> int:
        return len(self._items)

    def _pop(self) -> None:
        _, fresh = self._items.popleft()
        self.fresh -= fresh


@dataclass(frozen=True)
class Row:
    region: str
    delay: float
    fresh: int
    stale: int
    errors: int
    misses: int
    window_ratio: float | None

    @property
    def checks(self) -> int:
        return self.fresh + self.stale + self.errors

    def cells(self) -> tuple[str, ...]:
        """One line of the printed table, in the order of :data:`TABLE_HEADERS`."""
        return (
            self.region,
            format_delay(self.delay),
            str(self.checks),
            str(self.fresh),
            str(self.stale),
            str(self.errors),
            format_percent(self.fresh, self.stale),
            format_nines(self.fresh, self.stale),
        )

    def as_dict(self) -> dict[str, Any]:
        value = nines(self.fresh, self.stale)
        return {
            "region": self.region,
            "delay": self.delay,
            "checks": self.checks,
            "fresh": self.fresh,
            "stale": self.stale,
            "errors": self.errors,
            "misses": self.misses,
            "fresh_ratio": fresh_ratio(self.fresh, self.stale),
            # null when nothing was stale (or nothing counted): see nines_at_least
            "nines": value if value is not None and math.isfinite(value) else None,
            "nines_at_least": (
                nines_resolution(self.fresh, self.stale)
                if value is not None and math.isinf(value)
                else None
            ),
            "fresh_percent": format_percent(self.fresh, self.stale),
            "window_fresh_ratio": self.window_ratio,
        }


@dataclass(frozen=True)
class Report:
    sample_rate: float
    delays: tuple[float, ...]
    sampled_events: int
    # checks skipped because they could not start within max_lateness of their time
    late: int
    # checks dropped because max_pending were already waiting
    overflow: int
    invalid_events: int
    pending: int
    rows: tuple[Row, ...]

    @property
    def checks(self) -> int:
        return sum(row.checks for row in self.rows)

    def table_rows(self) -> list[tuple[str, ...]]:
        return [row.cells() for row in self.rows]

    def as_dict(self) -> dict[str, Any]:
        return {
            "sample_rate": self.sample_rate,
            "delays": list(self.delays),
            "sampled_events": self.sampled_events,
            "skipped": {"late": self.late, "overflow": self.overflow},
            "invalid_events": self.invalid_events,
            "pending": self.pending,
            "rows": [row.as_dict() for row in self.rows],
        }


# --- the meter ----------------------------------------------------------------------------


@dataclass(order=True, frozen=True)
class _Due:
    at: float
    seq: int
    delay: float = field(compare=False)
    event: Event = field(compare=False)


class Meter:
    """Samples the event stream and reads each sampled write in every region after each delay.

    ``start()`` / ``stop()`` own its tasks; ``ready`` once it follows the end of every
    partition (writes published after that are seen).
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        region_urls: Mapping[str, str],
        *,
        metrics: Metrics | None = None,
        sample_rate: float = 0.1,
        delays: Sequence[float] = DEFAULT_DELAYS,
        concurrency: int = 32,
        timeout: float = 2.0,
        max_lateness: float = 0.5,
        window_seconds: float = 600.0,
        window_checks: int = 10_000,
        max_pending: int = 100_000,
        headers: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not region_urls:
            raise ValueError("the meter needs the URL of at least one region")
        if not delays or any(not d > 0 for d in delays):
            raise ValueError(f"delays must be positive seconds, got {list(delays)}")
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in [0, 1], got {sample_rate}")
        self.kafka = kafka
        self.urls = {region: url.rstrip("/") for region, url in region_urls.items()}
        self.metrics = metrics or Metrics()
        self.sample_rate = sample_rate
        self.delays = tuple(sorted(set(delays)))
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_lateness = max_lateness
        self.max_pending = max_pending
        self.headers = dict(headers or {})
        self.clock = clock
        self.transport = transport
        # events published after this (epoch ms) are not sampled; None: no end
        self.until_ms: int | None = None
        self.tallies = {(r, d): Tally() for r in self.urls for d in self.delays}
        self.windows = {
            (r, d): Window(window_seconds, window_checks) for r in self.urls for d in self.delays
        }
        self.sampled_events = 0
        self.late = 0
        self.overflow = 0
        self.invalid_events = 0
        self._due: list[_Due] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._checks: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._http: httpx.AsyncClient | None = None
        self._positioned = False

    @property
    def ready(self) -> bool:
        """Following the end of every partition of the topic, with its tasks running."""
        return (
            self._positioned
            and bool(self._tasks)
            and not any(task.done() for task in self._tasks)
            and self._consumer is not None
            and bool(self._consumer.assignment())
        )

    @property
    def pending(self) -> int:
        """Checks waiting for their time or running."""
        return len(self._due) + len(self._checks)

    async def start(self, *, follow: bool = True) -> None:
        """Start checking; with ``follow`` (the default) also follow the event topic.

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
        self._tasks = [asyncio.create_task(self._dispatch(), name="meter-dispatch")]
        if follow:
            # no consumer group: every meter sees every partition, from the end (seek below)
            # checks run their delay after each write: fetches that wait up to a quarter
            # of the shortest one (at most 200 ms) spare the broker (the relays wait
            # 20 ms, which is their lag)
            wait = max(self.kafka.fetch_max_wait_ms, min(200, int(min(self.delays) * 250)))
            lazy = self.kafka.model_copy(update={"fetch_max_wait_ms": wait})
            self._consumer = make_consumer(lazy, self.kafka.topic, group_id=None)
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
        for task in [*self._tasks, *self._checks]:
            task.cancel()
        for task in [*self._tasks, *self._checks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        self._checks.clear()
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
        for (region, delay), tally in self.tallies.items():
            window = self.windows[region, delay]
            window.prune(now)
            rows.append(
                Row(
                    region=region,
                    delay=delay,
                    fresh=tally.fresh,
                    stale=tally.stale,
                    errors=tally.errors,
                    misses=tally.misses,
                    window_ratio=window.ratio(),
                )
            )
        return Report(
            sample_rate=self.sample_rate,
            delays=self.delays,
            sampled_events=self.sampled_events,
            late=self.late,
            overflow=self.overflow,
            invalid_events=self.invalid_events,
            pending=self.pending,
            rows=tuple(rows),
        )

    # -- consuming -------------------------------------------------------------------------

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        await self._position(consumer)
        async for record in records(consumer, "meter"):
            self._take(record)

    async def _position(self, consumer: AIOKafkaConsumer) -> None:
        """Follow the topic from its end: only writes from now on are measured."""
        ends = await follow_from_end(consumer, "meter")
        log.info("meter follows %s from offsets %s", self.kafka.topic, ends)
        self._positioned = True

    def _take(self, record: ConsumerRecord[bytes, bytes]) -> None:
        # most events are not sampled: a look at two fields spares validating them all,
        # which at a system of record's burst rate would cost the meter a core
        try:
            head = orjson.loads(record.value) if record.value is not None else None
        except orjson.JSONDecodeError:
            self.invalid_events += 1
            return
        if isinstance(head, dict):
            kind, event_id = head.get("type"), head.get("id")
            unsampled = isinstance(event_id, str) and not sampled(event_id, self.sample_rate)
            if kind != "key" or unsampled:
                return
        try:
            event = events.decode(record.value)
        except InvalidEvent:
            self.invalid_events += 1
            return
        self.offer(event)

    def offer(self, event: Event) -> bool:
        """Schedule the checks of a key event if it is sampled; whether it was."""
        if event.type != "key" or not sampled(event.id, self.sample_rate):
            return False
        if self.until_ms is not None and event.ts_ms > self.until_ms:
            return False
        self.sampled_events += 1
        self.metrics.meter_sampled.inc()
        for delay in self.delays:
            if len(self._due) >= self.max_pending:
                self.overflow += 1
                self.metrics.meter_skipped.labels(delay_label(delay), "overflow").inc()
                continue
            heapq.heappush(
                self._due, _Due(event.ts_ms / 1000 + delay, next(self._seq), delay, event)
            )
        self._wake.set()
        return True

    # -- checking --------------------------------------------------------------------------

    async def _dispatch(self) -> None:
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
            await self._slots.acquire()
            if self.clock() - due.at > self.max_lateness:
                self._slots.release()
                self.late += 1
                self.metrics.meter_skipped.labels(delay_label(due.delay), "late").inc()
                continue
            task = asyncio.create_task(self._check(due))
            self._checks.add(task)
            task.add_done_callback(self._check_done)

    def _check_done(self, task: asyncio.Task[None]) -> None:
        self._checks.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("meter check failed", exc_info=task.exception())

    async def _check(self, due: _Due) -> None:
        event = due.event
        assert event.key is not None
        path = key_path(event.ns, event.key)
        regions = list(self.urls)
        answers = await asyncio.gather(*(self._read(self.urls[r] + path) for r in regions))
        now = time.monotonic()
        label = delay_label(due.delay)
        for region, (status, etag, cache) in zip(regions, answers, strict=True):
            result = classify(status, etag, event.version)
            self.tallies[region, due.delay].add(result, miss=status == 200 and cache == "MISS")
            self.metrics.meter_checks.labels(region, label, result).inc()
            if result == "error":
                continue
            window = self.windows[region, due.delay]
            window.add(now, result == "fresh")
            ratio = window.ratio()
            if ratio is not None:
                self.metrics.meter_freshness.labels(region, label).set(ratio)

    async def _read(self, url: str) -> tuple[int | None, str | None, str | None]:
        """Status, ETag and X-Cache of a cache-only GET; status None when no answer came."""
        assert self._http is not None
        try:
            response = await self._http.get(url, headers=_ONLY_IF_CACHED)
        except httpx.HTTPError:
            return None, None, None
        return response.status_code, response.headers.get("etag"), response.headers.get("x-cache")


async def measure(
    meter: Meter,
    *,
    duration: float,
    ready_timeout: float = 30.0,
    on_ready: Callable[[], None] | None = None,
) -> Report:
    """One-shot: measure the writes published during ``duration`` seconds, then report.

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
