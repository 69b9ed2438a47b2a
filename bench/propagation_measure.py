"""The measuring half of ``bench.propagation``: writer, watchers, pollers, statistics.

Given a running platform (:class:`Target`), :func:`measure` pre-creates the
keys, then for each rate runs an open-loop writer against the home region and
measures, per other region:

* **relay histogram** — the relay's own ``mrcache_invalidation_lag_seconds``
  (event ``ts_ms`` at publish → applied), bucket counts diffed across the run;
  quantiles are interpolated inside its coarse buckets (5, 10, 25, 50, 100 ms…);
* **write→applied** — direct: a watcher polls the region's Redis (one Lua call
  per poll returning ``ver``, ``tomb``, ``ts`` of every pending key) until the
  written version appears. The superseded marker the relay writes carries
  ``ts`` = Redis time of the apply (ms), so the apply time is exact to 1 ms
  whatever the poll interval; it is compared with the write's version, which
  the home region assigns as its Redis time in microseconds when it applies
  the write (just before publishing). Where the marker was already replaced
  (a newer version, or a fill by the end-to-end poller) the poll's reply time
  is used instead and counted as "approx";
* **ack→applied** — the same apply time minus the client's receipt of the 200
  (negative when the region applied it before the client had the ack);
* **end-to-end** (one region, default the second) — for every ``e2e_every``-th
  write a poller GETs the key in that region until its ETag shows the new
  version: ack → visible. Polls are slow (``e2e_slow``) until the watcher has
  seen the version applied in that region's Redis, then fast (``e2e_fast``),
  so pollers do not flood the region (the resolution of the end-to-end figure
  is therefore about the watcher's poll interval plus one GET). The sampled
  keys are exactly the keys with index % ``e2e_every`` == 0, which the pollers
  refill after each write, so the region always holds the previous version
  when the next write comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx
from redis.asyncio import Redis

from bench.proc import by_kind, cpu_all
from bench.propagation_http import HttpError, HttpPool
from libs.common import keys

_PROBE = """
local out = {}
for i, k in ipairs(KEYS) do
  local r = redis.call('HMGET', k, 'ver', 'tomb', 'ts')
  out[3 * i - 2] = r[1]
  out[3 * i - 1] = r[2]
  out[3 * i] = r[3]
end
return out
"""
_LAG_METRIC = "mrcache_invalidation_lag_seconds_bucket"
_EVENTS_METRIC = "mrcache_relay_events_total"


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class RegionTarget:
    url: str
    redis: str
    relay_metrics: str | None  # http://host:port/metrics, None when unknown


@dataclass(frozen=True)
class Target:
    """A running platform as the benchmark reaches it."""

    home: str
    regions: dict[str, RegionTarget]
    e2e_region: str
    # the platform's processes (cluster.json), for CPU per write; empty when not local
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def others(self) -> list[str]:
        return [r for r in self.regions if r != self.home]


@dataclass(frozen=True)
class RunConfig:
    rates: tuple[float, ...]
    duration: float
    keys: int
    e2e_every: int
    connections: int = 32
    poll_interval: float = 0.002
    e2e_slow: float = 0.010
    e2e_fast: float = 0.001
    drain_timeout: float = 15.0
    send_grace: float = 1.0
    ns: str = "bench-propagation"
    value_size: int = 64


# ---------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Summary:
    n: int
    p50: float | None  # milliseconds
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Summary:
        if not seconds:
            return cls(0, None, None, None)
        ordered = sorted(seconds)
        return cls(
            len(ordered),
            _rank(ordered, 0.50) * 1000,
            _rank(ordered, 0.99) * 1000,
            ordered[-1] * 1000,
        )


def _rank(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass(frozen=True)
class HistSummary:
    """Quantiles interpolated within the relay histogram's buckets (milliseconds)."""

    count: int
    p50: float | None
    p99: float | None
    max_bucket: float | None  # upper bound of the highest non-empty bucket


def parse_buckets(text: str, region: str) -> dict[float, float]:
    """Cumulative bucket counts ``{le: count}`` of the lag histogram for ``region``."""
    out: dict[float, float] = {}
    for line in text.splitlines():
        if not line.startswith(_LAG_METRIC + "{"):
            continue
        labels, _, value = line[len(_LAG_METRIC) + 1 :].rpartition("} ")
        fields = dict(
            item.split("=", 1) for item in labels.split(",") if "=" in item
        )  # values quoted
        if fields.get("region", "").strip('"') != region:
            continue
        le = fields.get("le", "").strip('"')
        out[math.inf if le == "+Inf" else float(le)] = float(value)
    return out


def parse_outcomes(text: str, region: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith(_EVENTS_METRIC + "{"):
            continue
        labels, _, value = line[len(_EVENTS_METRIC) + 1 :].rpartition("} ")
        fields = {k: v.strip('"') for k, v in (i.split("=", 1) for i in labels.split(",") if i)}
        if fields.get("region") == region:
            out[fields.get("outcome", "?")] = float(value)
    return out


def hist_summary(before: dict[float, float], after: dict[float, float]) -> HistSummary:
    bounds = sorted(after)
    cumulative = [after[b] - before.get(b, 0.0) for b in bounds]
    total = cumulative[-1] if cumulative else 0.0
    if total <= 0:
        return HistSummary(0, None, None, None)

    def quantile(q: float) -> float:
        rank = q * total
        lower, below = 0.0, 0.0
        for bound, cum in zip(bounds, cumulative, strict=True):
            if cum >= rank:
                if math.isinf(bound):
                    return lower * 1000  # beyond the last finite bucket: its bound, a floor
                inside = cum - below
                frac = (rank - below) / inside if inside > 0 else 1.0
                return (lower + (bound - lower) * frac) * 1000
            lower, below = bound, cum
        return lower * 1000

    top = None
    below = 0.0
    for bound, cum in zip(bounds, cumulative, strict=True):
        if cum > below:
            top = bound
        below = cum
    return HistSummary(
        int(total),
        quantile(0.50),
        quantile(0.99),
        None if top is None else top * 1000,
    )


# ---------------------------------------------------------------- results


@dataclass
class RegionResult:
    region: str
    relay_hist: HistSummary | None
    relay_outcomes: dict[str, float]
    write_to_applied: Summary
    ack_to_applied: Summary
    approx: int
    missing: int
    e2e: Summary | None = None
    e2e_miss: int = 0  # visible version came with X-Cache: MISS (a refill from home)
    e2e_timeouts: int = 0


@dataclass
class RateResult:
    rate: float
    duration: float
    scheduled: int
    unsent: int  # dropped: no connection free before the window closed (backlog)
    ok: int
    errors: int
    error_kinds: dict[str, int]
    achieved: float  # successful writes per second over the sending window
    send_lag: Summary  # actual send minus scheduled
    put_latency: Summary  # from scheduled time to acknowledgement (open loop)
    regions: list[RegionResult]
    bench_cpu: float  # this process's CPU while writing, in cores (is the client the limit?)
    load1: float  # the machine's 1-minute load average at the end of the writes
    # CPU microseconds per acknowledged write, by process kind, from the first write until
    # every region applied the last (local runs only)
    cpu_us_per_write: dict[str, float] = field(default_factory=dict)


@dataclass
class PlatformResult:
    mode: str
    topology: str
    precreate_seconds: float
    warm_fill: Summary  # GET in the end-to-end region that filled from home (MISS)
    rates: list[RateResult] = field(default_factory=list)
    # rate -> a bare aiokafka producer -> consumer on the same broker (bench.kafka_floor)
    floors: dict[float, Summary] = field(default_factory=dict)


# ---------------------------------------------------------------- watchers


@dataclass(slots=True)
class Pending:
    hkey: str
    version: int
    t_ack: float
    applied: asyncio.Event | None = None


@dataclass
class Observed:
    write_to_applied: list[float] = field(default_factory=list)
    ack_to_applied: list[float] = field(default_factory=list)
    approx: int = 0


class AppliedWatcher:
    """Polls one region's Redis until each expected version has been applied there."""

    def __init__(self, region: str, redis_url: str, interval: float, batch: int = 1000) -> None:
        self.region = region
        self.redis = Redis.from_url(redis_url, socket_timeout=5.0)
        self.interval = interval
        self.batch = batch
        self.pending: list[Pending] = []
        self.observed = Observed()
        self._script = self.redis.register_script(_PROBE)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"watch-{self.region}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.redis.aclose()

    def expect(self, item: Pending) -> None:
        self.pending.append(item)
        self._wake.set()

    def take(self) -> tuple[Observed, int]:
        """What was observed since the last call, and how many are still pending (dropped)."""
        observed, missing = self.observed, len(self.pending)
        self.observed = Observed()
        self.pending = []
        return observed, missing

    async def drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def _run(self) -> None:
        while True:
            if not self.pending:
                self._wake.clear()
                await self._wake.wait()
            batch = self.pending[: self.batch]
            try:
                reply = await self._script(keys=[p.hkey for p in batch])
            except Exception as exc:  # keep watching; a region Redis hiccup is reported below
                print(f"  watcher {self.region}: {exc!r}", flush=True)
                await asyncio.sleep(0.1)
                continue
            now = time.time()
            done: set[int] = set()
            for i, item in enumerate(batch):
                ver, tomb, ts = reply[3 * i], reply[3 * i + 1], reply[3 * i + 2]
                if ver is None or int(ver) < item.version:
                    continue
                if int(ver) == item.version and tomb == b"m" and ts is not None:
                    applied = int(ts) / 1000.0
                else:
                    applied = now
                    self.observed.approx += 1
                home_write = item.version / 1e6
                if abs(home_write - item.t_ack) < 10.0:  # the version is a µs timestamp
                    self.observed.write_to_applied.append(applied - home_write)
                self.observed.ack_to_applied.append(applied - item.t_ack)
                if item.applied is not None:
                    item.applied.set()
                done.add(id(item))
            if done:
                self.pending = [p for p in self.pending if id(p) not in done]
            await asyncio.sleep(self.interval)


# ---------------------------------------------------------------- end-to-end probes


@dataclass
class E2EStats:
    latency: list[float] = field(default_factory=list)
    miss: int = 0
    timeouts: int = 0
    errors: int = 0


async def probe_visible(
    pool: HttpPool,
    path: str,
    version: int,
    t_ack: float,
    applied: asyncio.Event,
    cfg: RunConfig,
    stats: E2EStats,
) -> None:
    deadline = t_ack + cfg.drain_timeout + 5.0
    while time.time() < deadline:
        try:
            reply = await pool.request("GET", path)
        except HttpError:
            stats.errors += 1
            await asyncio.sleep(cfg.e2e_slow)
            continue
        seen = time.time()
        held = reply.etag_version() if reply.status == 200 else None
        if held is not None and held >= version:
            stats.latency.append(seen - t_ack)
            stats.miss += reply.headers.get("x-cache") == "MISS"
            return
        if applied.is_set():
            await asyncio.sleep(cfg.e2e_fast)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(applied.wait(), cfg.e2e_slow)
    stats.timeouts += 1


# ---------------------------------------------------------------- the writer


def key_name(index: int) -> str:
    return f"k{index:06d}"


def key_path(ns: str, index: int) -> str:
    return f"/v1/ns/{ns}/keys/{key_name(index)}"


def redis_key(ns: str, index: int) -> str:
    return keys.entry(ns, key_name(index)).decode()


AckHook = Callable[[int, int, float], None]  # key index, version, ack wall time


@dataclass
class WriterStats:
    scheduled: int = 0
    unsent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    send_lag: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    first_due: float = 0.0
    last_ack: float = 0.0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def write_open_loop(
    pool: HttpPool, cfg: RunConfig, rate: float, on_ack: AckHook
) -> WriterStats:
    """Write ``rate``/s for ``cfg.duration`` s, request ``i`` scheduled at ``start + i/rate``."""
    loop = asyncio.get_running_loop()
    stats = WriterStats()
    total = int(rate * cfg.duration)
    value = (b"v" * cfg.value_size)[: cfg.value_size]
    start = loop.time() + 0.05
    # A request not sent within this long after the window is dropped (counted as
    # unsent): past the service's capacity the backlog would otherwise grow without end.
    cutoff = start + cfg.duration + cfg.send_grace
    stats.first_due = start
    tasks: set[asyncio.Task[None]] = set()

    async def one(i: int, due: float) -> None:
        index = i % cfg.keys
        path = key_path(cfg.ns, index)
        conn = await pool.acquire()
        try:
            sent = loop.time()
            if sent > cutoff:
                stats.unsent += 1  # still waiting for a connection when the window closed
                return
            stats.send_lag.append(sent - due)
            reply = await conn.request(
                "PUT", path, value, (("Content-Type", "application/octet-stream"),)
            )
        except HttpError as exc:
            stats.error(str(exc).split(": ", 1)[-1][:60])
            return
        finally:
            pool.release(conn)
        acked = loop.time()
        t_ack = time.time()
        version = reply.etag_version()
        if reply.status != 200 or version is None:
            stats.error(f"HTTP {reply.status}")
            return
        stats.ok += 1
        stats.latency.append(acked - due)
        stats.last_ack = acked
        on_ack(index, version, t_ack)

    for i in range(total):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        stats.scheduled += 1
        task = asyncio.create_task(one(i, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks)
    return stats


# ---------------------------------------------------------------- orchestration


async def _metrics(client: httpx.AsyncClient, url: str | None) -> str:
    if url is None:
        return ""
    try:
        reply = await client.get(url)
        return reply.text if reply.status_code == 200 else ""
    except httpx.HTTPError:
        return ""


async def _precreate(
    target: Target, cfg: RunConfig, home: HttpPool, e2e: HttpPool, watchers: list[AppliedWatcher]
) -> tuple[float, Summary]:
    """PUT every key, wait until every region applied it, warm the sampled keys' copies."""
    started = time.monotonic()
    value = b"p" * cfg.value_size
    sem = asyncio.Semaphore(cfg.connections)
    failures = 0

    async def put(index: int) -> None:
        nonlocal failures
        async with sem:
            for _attempt in range(3):
                try:
                    reply = await home.request("PUT", key_path(cfg.ns, index), value)
                except HttpError:
                    continue
                version = reply.etag_version()
                if reply.status == 200 and version is not None:
                    for w in watchers:
                        w.expect(Pending(redis_key(cfg.ns, index), version, time.time()))
                    return
            failures += 1

    await asyncio.gather(*(put(i) for i in range(cfg.keys)))
    if failures:
        raise RuntimeError(f"could not pre-create {failures} of {cfg.keys} keys")
    for w in watchers:
        await w.drain(60.0)
        _, missing = w.take()
        if missing:
            raise RuntimeError(f"{missing} pre-created keys never reached {w.region}")
    fills: list[float] = []
    warm_sem = asyncio.Semaphore(4)  # few at a time: the fill latency itself, not a queue

    async def warm(index: int) -> None:
        async with warm_sem:
            t0 = time.perf_counter()
            reply = await e2e.request("GET", key_path(cfg.ns, index))
            if reply.status != 200:
                raise RuntimeError(f"warming {key_name(index)} in {target.e2e_region}: {reply}")
            if reply.headers.get("x-cache") == "MISS":
                fills.append(time.perf_counter() - t0)

    await asyncio.gather(*(warm(i) for i in range(0, cfg.keys, cfg.e2e_every)))
    return time.monotonic() - started, Summary.of(fills)


async def _run_rate(
    target: Target,
    cfg: RunConfig,
    rate: float,
    home: HttpPool,
    e2e_pool: HttpPool,
    watchers: dict[str, AppliedWatcher],
    metrics_client: httpx.AsyncClient,
) -> RateResult:
    before = {
        r: await _metrics(metrics_client, target.regions[r].relay_metrics) for r in target.others
    }
    e2e = E2EStats()
    probes: set[asyncio.Task[None]] = set()

    def on_ack(index: int, version: int, t_ack: float) -> None:
        hkey = redis_key(cfg.ns, index)
        sampled = index % cfg.e2e_every == 0
        for region, w in watchers.items():
            event = asyncio.Event() if sampled and region == target.e2e_region else None
            w.expect(Pending(hkey, version, t_ack, event))
            if event is not None:
                task = asyncio.create_task(
                    probe_visible(
                        e2e_pool, key_path(cfg.ns, index), version, t_ack, event, cfg, e2e
                    )
                )
                probes.add(task)
                task.add_done_callback(probes.discard)

    procs0 = cpu_all(target.pids)
    cpu0, wall0 = time.process_time(), time.monotonic()
    writer = await write_open_loop(home, cfg, rate, on_ack)
    bench_cpu = (time.process_time() - cpu0) / max(1e-9, time.monotonic() - wall0)
    load1 = os.getloadavg()[0]
    for w in watchers.values():
        await w.drain(cfg.drain_timeout)
    spent = by_kind(procs0, cpu_all(target.pids))
    if probes:
        await asyncio.wait(probes, timeout=cfg.drain_timeout + 10.0)
        for task in probes:
            task.cancel()
    after = {
        r: await _metrics(metrics_client, target.regions[r].relay_metrics) for r in target.others
    }
    window = max(cfg.duration, writer.last_ack - writer.first_due)
    regions: list[RegionResult] = []
    for region in target.others:
        observed, missing = watchers[region].take()
        hist = None
        if after[region]:
            hist = hist_summary(
                parse_buckets(before[region], region), parse_buckets(after[region], region)
            )
        outcomes_before = parse_outcomes(before[region], region)
        outcomes = {
            k: v - outcomes_before.get(k, 0.0)
            for k, v in parse_outcomes(after[region], region).items()
        }
        result = RegionResult(
            region=region,
            relay_hist=hist,
            relay_outcomes={k: v for k, v in outcomes.items() if v},
            write_to_applied=Summary.of(observed.write_to_applied),
            ack_to_applied=Summary.of(observed.ack_to_applied),
            approx=observed.approx,
            missing=missing,
        )
        if region == target.e2e_region:
            result.e2e = Summary.of(e2e.latency)
            result.e2e_miss = e2e.miss
            result.e2e_timeouts = e2e.timeouts
        regions.append(result)
    return RateResult(
        rate=rate,
        duration=cfg.duration,
        scheduled=writer.scheduled,
        unsent=writer.unsent,
        ok=writer.ok,
        errors=sum(writer.errors.values()),
        error_kinds=dict(writer.errors),
        achieved=writer.ok / window if window > 0 else 0.0,
        send_lag=Summary.of(writer.send_lag),
        put_latency=Summary.of(writer.latency),
        regions=regions,
        bench_cpu=bench_cpu,
        load1=load1,
        cpu_us_per_write={kind: round(seconds / writer.ok * 1e6) for kind, seconds in spent.items()}
        if writer.ok
        else {},
    )


async def measure(
    target: Target,
    cfg: RunConfig,
    *,
    mode: str,
    topology: str,
    report: Callable[[str], None] = print,
    on_rate: Callable[[RateResult], None] | None = None,
) -> PlatformResult:
    home = HttpPool(target.regions[target.home].url, cfg.connections)
    e2e_pool = HttpPool(target.regions[target.e2e_region].url, cfg.connections)
    watchers = {
        r: AppliedWatcher(r, target.regions[r].redis, cfg.poll_interval) for r in target.others
    }
    for w in watchers.values():
        w.start()
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=5.0) as metrics_client:
            report(f"[{mode}] pre-creating {cfg.keys} keys in {target.home} ...")
            seconds, warm = await _precreate(target, cfg, home, e2e_pool, list(watchers.values()))
            result = PlatformResult(mode, topology, seconds, warm)
            report(
                f"[{mode}] pre-created in {seconds:.1f} s; {warm.n} sampled keys filled in "
                f"{target.e2e_region} (GET MISS → fill from {target.home}: "
                f"p50 {_ms(warm.p50)} ms, p99 {_ms(warm.p99)} ms)"
            )
            for rate in cfg.rates:
                report(f"[{mode}] writing {rate:g}/s for {cfg.duration:g} s ...")
                rate_result = await _run_rate(
                    target, cfg, rate, home, e2e_pool, watchers, metrics_client
                )
                result.rates.append(rate_result)
                if on_rate is not None:
                    on_rate(rate_result)
                await asyncio.sleep(1.0)
            return result
    finally:
        for w in watchers.values():
            await w.close()
        home.close()
        e2e_pool.close()


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
