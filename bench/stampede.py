"""Cache stampede: a cold-key storm and an expiry wave, protection on and off in one run.

``python -m bench.stampede [--storm-size 1000] [--storms 3] [--keys 10000] [--ttl 20]
[--rate 300]``.

Starts redis, the broker, a real origin (100 ms latency) and two regional_cache
processes of us-east behind the same Redis, then measures:

(a) storm: ``--storm-size`` concurrent GETs of one cold key, alternating between the
    two processes, repeated for ``--storms`` cold keys. "on" = through the cache
    (single-flight in-process + a Redis lease shared by the processes of the region);
    "off" = the same storm sent straight to the origin, which is what an unprotected
    cache-aside client does on a miss (single-flight cannot be switched off in the
    service). Target: 1 origin request per storm per region.
(b) expiry wave: ``--keys`` keys written together (PUT as fast as the two processes
    take them, a few seconds) with one TTL ``--ttl`` (the origin's ``max-age`` too, so its
    refreshes keep it), then random keys read at ``--rate`` req/s (paced, open loop)
    while they expire, until ``--read-ttls`` x TTL after the first possible expiry
    (0.9 TTL). The origin's request count is sampled every 250 ms; its rates count from
    that first expiry on (before it, neither mode fetches anything). "on" = namespace
    with ``ttl_jitter = 0.1``, ``stale_while_revalidate = 30`` and ``refresh_spread =
    15``; "off" = ``ttl_jitter = 0`` and ``stale_while_revalidate = 0``. Target ("on"):
    max origin rate over 1 s windows <= 2x mean.

Prints a table and writes ``bench/results/stampede.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import rawhttp
from libs.common.kafka import ensure_topics
from libs.common.processes import free_port
from libs.common.settings import KafkaSettings
from tests.support.origin_server import OriginServer
from tests.support.platform import (
    Broker,
    RedisServer,
    Service,
    service_env,
    start_broker,
    start_redis,
    start_service,
)

RESULTS = Path(__file__).parent / "results" / "stampede.json"
REGION = "us-east"
NS_ON = "stampede_on"
NS_OFF = "stampede_off"
ORIGIN_LATENCY_MS = 100
SAMPLE_SECONDS = 0.25
WINDOW_SLICES = 4  # 4 x 250 ms = 1 s windows
# the earliest a key can expire, as a share of its TTL (jitter 0.1 in the protected mode)
EARLIEST_EXPIRY = 0.9
CONFIG = """
[platform]
regions = ["{region}"]

[namespaces.{on}]
origin = "{origin}"
default_ttl = 3600
ttl_jitter = 0.1
stale_while_revalidate = 30
refresh_spread = 15
negative_ttl = 1

[namespaces.{off}]
origin = "{origin}"
default_ttl = 3600
ttl_jitter = 0
stale_while_revalidate = 0
negative_ttl = 1
"""


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class StormResult:
    mode: str
    storms: int
    storm_size: int
    origin_requests: list[int]
    statuses: dict[str, int]
    p50_ms: float
    p99_ms: float
    wall_s: list[float]

    @property
    def per_storm(self) -> float:
        return sum(self.origin_requests) / max(len(self.origin_requests), 1)


@dataclass
class WaveResult:
    mode: str
    keys: int
    ttl: float
    fill_s: float
    read_s: float
    reads: int
    statuses: dict[str, int]
    x_cache: dict[str, int]
    origin_requests: int
    mean_rate: float
    max_rate_1s: float
    max_over_mean: float
    p50_ms: float
    p99_ms: float
    # origin requests per 1 s bucket of the read phase, for plotting
    per_second: list[int] = field(default_factory=list)


# --- (a) storm ---------------------------------------------------------------


async def storm(urls: list[str], size: int) -> tuple[list[float], Counter[str], float]:
    """``size`` GETs spread round-robin over ``urls``, all sent at one instant on their own
    connections (bench.rawhttp): latencies from that instant (ms), statuses, wall time."""
    replies, wall = await rawhttp.storm(urls, size)
    latencies = [r.seconds * 1000 for r in replies if isinstance(r, rawhttp.Reply)]
    statuses: Counter[str] = Counter(
        str(r.status) if isinstance(r, rawhttp.Reply) else "error" for r in replies
    )
    return latencies, statuses, wall


async def run_storms(
    origin: OriginServer, services: list[Service], args: argparse.Namespace
) -> list[StormResult]:
    results: list[StormResult] = []
    for mode in ("on", "off"):
        counts: list[int] = []
        latencies: list[float] = []
        statuses: Counter[str] = Counter()
        walls: list[float] = []
        for n in range(args.storms):
            key = f"cold-{mode}-{n}-{random.randrange(1 << 30)}"
            origin.reset()
            origin.control(latency_ms=ORIGIN_LATENCY_MS)
            if mode == "on":
                urls = [f"{s.url}/v1/ns/{NS_ON}/keys/{key}" for s in services]
            else:
                urls = [origin.url(f"/items/{key}")]
            lat, st, wall = await storm(urls, args.storm_size)
            counts.append(int(origin.stats()["requests"].get(key, 0)))
            latencies += lat
            statuses += st
            walls.append(round(wall, 3))
        results.append(
            StormResult(
                mode=mode,
                storms=args.storms,
                storm_size=args.storm_size,
                origin_requests=counts,
                statuses=dict(statuses),
                p50_ms=round(percentile(latencies, 50), 1),
                p99_ms=round(percentile(latencies, 99), 1),
                wall_s=walls,
            )
        )
    return results


# --- (b) expiry wave ---------------------------------------------------------


class Regions:
    """A pool of raw keep-alive connections per regional_cache process."""

    def __init__(self, services: list[Service], connections: int) -> None:
        self.pools = [rawhttp.Pool(s.url, connections) for s in services]

    async def __aenter__(self) -> Regions:
        await asyncio.gather(*(p.open() for p in self.pools))
        return self

    async def __aexit__(self, *_: object) -> None:
        await asyncio.gather(*(p.close() for p in self.pools))

    async def get(self, i: int, target: str) -> rawhttp.Reply:
        return await self.pools[i % len(self.pools)].request("GET", target)

    async def put(self, i: int, target: str, body: bytes) -> rawhttp.Reply:
        return await self.pools[i % len(self.pools)].request("PUT", target, body)


async def fill(regions: Regions, ns: str, keys: int, ttl: float) -> float:
    """PUT every key with the same TTL, as fast as the two processes take them, so they
    are written together (as the origin's version 1: its refreshes renew them); seconds
    taken."""
    sem = asyncio.Semaphore(128)

    async def one(i: int) -> None:
        async with sem:
            target = f"/v1/ns/{ns}/keys/k{i}?ttl={ttl:g}&version=1"
            r = await regions.put(i, target, f"value-of-k{i}-v1".encode())
            if r.status != 200:
                raise RuntimeError(f"PUT {ns}/k{i}: {r.status} {r.body[:200]!r}")

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(keys)))
    return time.perf_counter() - started


async def sample_origin(
    origin: OriginServer, stop: asyncio.Event, samples: list[tuple[float, int]]
) -> None:
    """Append (monotonic time, origin total) every SAMPLE_SECONDS until ``stop``."""
    async with httpx.AsyncClient(base_url=origin.base_url, timeout=5, trust_env=False) as c:
        next_at = time.monotonic()
        while True:
            r = await c.get("/_stats")
            samples.append((time.monotonic(), int(r.json()["total"])))
            if stop.is_set():
                return
            next_at += SAMPLE_SECONDS
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def paced_reads(
    regions: Regions, ns: str, keys: int, rate: float, duration: float
) -> tuple[list[float], Counter[str], Counter[str], int]:
    """Open-loop random reads at ``rate`` req/s for ``duration`` s (latency from the send)."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    x_cache: Counter[str] = Counter()
    pending: set[asyncio.Task[None]] = set()

    async def one(i: int) -> None:
        try:
            r = await regions.get(i, f"/v1/ns/{ns}/keys/k{random.randrange(keys)}")
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            statuses[type(exc).__name__] += 1
            return
        statuses[str(r.status)] += 1
        x_cache[r.headers.get("x-cache", "-")] += 1
        latencies.append(r.seconds * 1000)

    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < duration:
        due = started + sent / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        task = asyncio.create_task(one(sent))
        pending.add(task)
        task.add_done_callback(pending.discard)
        sent += 1
    await asyncio.gather(*pending)
    return latencies, statuses, x_cache, sent


def rates(samples: list[tuple[float, int]]) -> tuple[int, float, float, list[int]]:
    """Total, mean rate, max rate over 1 s sliding windows, and per-1 s bucket counts."""
    if len(samples) < 2:
        return 0, 0.0, 0.0, []
    t0, c0 = samples[0]
    total = samples[-1][1] - c0
    mean = total / (samples[-1][0] - t0)
    best = 0.0
    for i in range(len(samples) - WINDOW_SLICES):
        (ta, ca), (tb, cb) = samples[i], samples[i + WINDOW_SLICES]
        best = max(best, (cb - ca) / (tb - ta))
    buckets: list[int] = []
    last = c0
    for t, c in samples:
        if t - t0 >= len(buckets) + 1:
            buckets.append(c - last)
            last = c
    return total, mean, best, buckets


async def run_wave(
    origin: OriginServer, services: list[Service], args: argparse.Namespace, mode: str
) -> WaveResult:
    ns = NS_ON if mode == "on" else NS_OFF
    async with Regions(services, args.connections // len(services)) as regions:
        origin.reset()
        origin.control(latency_ms=ORIGIN_LATENCY_MS, max_age=int(args.ttl))
        fill_s = await fill(regions, ns, args.keys, args.ttl)
        samples: list[tuple[float, int]] = []
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_origin(origin, stop, samples))
        # read until read_ttls x TTL after the first key can expire (0.9 TTL: jitter 0.1)
        first_expiry = EARLIEST_EXPIRY * args.ttl
        try:
            lat, statuses, x_cache, sent = await paced_reads(
                regions, ns, args.keys, args.rate, first_expiry + args.read_ttls * args.ttl
            )
        finally:
            stop.set()
            await sampler
    # the rates count from the first expiry: before it neither mode can fetch anything
    start = samples[0][0] + first_expiry if samples else 0.0
    total, mean, best, buckets = rates([x for x in samples if x[0] >= start])
    return WaveResult(
        mode=mode,
        keys=args.keys,
        ttl=args.ttl,
        fill_s=round(fill_s, 2),
        read_s=round(samples[-1][0] - samples[0][0], 2) if samples else 0.0,
        reads=sent,
        statuses=dict(statuses),
        x_cache=dict(x_cache),
        origin_requests=total,
        mean_rate=round(mean, 1),
        max_rate_1s=round(best, 1),
        max_over_mean=round(best / mean, 2) if mean else 0.0,
        p50_ms=round(percentile(lat, 50), 1),
        p99_ms=round(percentile(lat, 99), 1),
        per_second=buckets,
    )


# --- platform and report -----------------------------------------------------


async def run(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    redis_server: RedisServer | None = None
    broker: Broker | None = None
    origin: OriginServer | None = None
    services: list[Service] = []
    try:
        redis_server = start_redis(workdir)
        broker = start_broker(workdir)
        await ensure_topics(KafkaSettings(bootstrap=broker.bootstrap))
        origin = OriginServer().start(workdir)
        config = workdir / "mrcache.toml"
        config.write_text(
            CONFIG.format(region=REGION, on=NS_ON, off=NS_OFF, origin=origin.url("/items/{key}"))
        )
        for _ in range(2):
            env = service_env(
                REGION,
                free_port(),
                redis_server.url,
                broker.bootstrap,
                MRCACHE_CONFIG=str(config),
                MRCACHE_ORIGIN_TIMEOUT="5",
            )
            services.append(start_service(workdir, env))
        storms = await run_storms(origin, services, args)
        # "off" first: a slow "on" phase must not leave refreshes in flight that tax "off"
        waves = [await run_wave(origin, services, args, mode) for mode in ("off", "on")]
        return {
            "settings": {
                "origin_latency_ms": ORIGIN_LATENCY_MS,
                "processes": len(services),
                "storm_size": args.storm_size,
                "storms": args.storms,
                "connections": args.connections,
                "keys": args.keys,
                "ttl": args.ttl,
                "rate": args.rate,
                "read_seconds": args.read_ttls * args.ttl,
                "sample_seconds": SAMPLE_SECONDS,
            },
            "storm": [asdict(s) | {"per_storm": s.per_storm} for s in storms],
            "wave": [asdict(w) for w in waves],
        }
    finally:
        for svc in services:
            svc.proc.stop()
        if origin is not None:
            origin.stop()
        if broker is not None and broker.proc is not None:
            broker.proc.stop()
        if redis_server is not None and redis_server.proc is not None:
            redis_server.proc.stop()


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b else "-"


def report(result: dict[str, Any]) -> str:
    s = result["settings"]
    on, off = (next(r for r in result["storm"] if r["mode"] == m) for m in ("on", "off"))
    lines = [
        f"(a) storm: {s['storm_size']} concurrent GETs of one cold key x {s['storms']} keys, "
        f"{s['connections']} connections, origin {s['origin_latency_ms']} ms, "
        f"{s['processes']} processes of {REGION}",
        f"{'mode':<26}{'origin req/storm':>18}{'p50 ms':>10}{'p99 ms':>10}  statuses",
    ]
    for r, label in ((on, "on (cache, single-flight)"), (off, "off (straight to origin)")):
        lines.append(
            f"{label:<26}{r['per_storm']:>18.1f}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}"
            f"  {r['statuses']}  per storm: {r['origin_requests']}"
        )
    lines.append(
        f"{'ratio off/on':<26}{_ratio(off['per_storm'], on['per_storm']):>18}"
        f"{_ratio(off['p50_ms'], on['p50_ms']):>10}{_ratio(off['p99_ms'], on['p99_ms']):>10}"
    )
    target = "met" if all(n == 1 for n in on["origin_requests"]) else "NOT met"
    lines += [f"target 1 origin request per storm per region: {target}", ""]
    lines += [
        f"(b) expiry wave: {s['keys']} keys written together, TTL {s['ttl']:g} s, random reads "
        f"at {s['rate']:g} req/s; origin rates from the first expiry for {s['read_seconds']:g} s, "
        f"sampled every {s['sample_seconds'] * 1000:g} ms",
        f"{'mode':<26}{'fill s':>7}{'origin req':>11}{'mean/s':>8}{'max 1s/s':>9}"
        f"{'max/mean':>9}{'p50 ms':>8}{'p99 ms':>8}  x-cache",
    ]
    waves = {w["mode"]: w for w in result["wave"]}
    labels = {"on": "on (jitter, SWR, spread)", "off": "off (no jitter, no SWR)"}
    for mode in ("on", "off"):
        w = waves[mode]
        lines.append(
            f"{labels[mode]:<26}{w['fill_s']:>7.1f}{w['origin_requests']:>11}"
            f"{w['mean_rate']:>8.1f}{w['max_rate_1s']:>9.1f}{w['max_over_mean']:>9.2f}"
            f"{w['p50_ms']:>8.1f}{w['p99_ms']:>8.1f}  {w['x_cache']}"
        )
    won, woff = waves["on"], waves["off"]
    lines.append(
        f"{'ratio off/on':<26}{'':>7}{_ratio(woff['origin_requests'], won['origin_requests']):>11}"
        f"{'':>8}{_ratio(woff['max_rate_1s'], won['max_rate_1s']):>9}"
        f"{'':>9}{_ratio(woff['p50_ms'], won['p50_ms']):>8}"
        f"{_ratio(woff['p99_ms'], won['p99_ms']):>8}"
    )
    verdict = "met" if 0 < won["max_over_mean"] <= 2 else "NOT met"
    lines.append(f"target on: max 1 s origin rate <= 2x mean: {verdict}")
    for mode in ("on", "off"):
        lines.append(f"origin req per second ({mode}): {waves[mode]['per_second']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--storm-size", type=int, default=1000)
    parser.add_argument("--storms", type=int, default=3, help="cold keys stormed per mode")
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--keys", type=int, default=10_000, help="keys of the expiry wave")
    parser.add_argument("--ttl", type=int, default=20, help="TTL of the keys and max-age (s)")
    parser.add_argument("--rate", type=float, default=300.0, help="reads/s in the wave")
    parser.add_argument("--read-ttls", type=float, default=2.0, help="read for N x TTL")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="stampede-") as tmp:
        result = asyncio.run(run(Path(tmp), args))
    print(report(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
