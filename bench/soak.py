"""Soak: mixed load over three regions with the RSS of every process sampled.

``python -m bench.soak [--duration 600] [--rate 300]``: 90 % GET, 8 % PUT, 2 %
invalidations (namespace and tag) spread over the three regions of a local
platform (``mrcache up``). Every 10 s it samples the resident memory of every
process in cluster.json. It reports the error count (target 0) and, per
process, the memory growth after warm-up as a slope in MB/min from a
least-squares fit (target: flat). The embedded broker keeps every message in
memory by design (architecture.md), so its growth is reported but expected.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.cluster import running_platform

RESULTS = Path(__file__).parent / "results" / "soak.json"
REGIONS = ("us-east", "eu-west", "ap-south")
NAMESPACES = ("soak-a", "soak-b", "soak-c")
KEYS = 5000


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    return 0.0 if var == 0 else 60 * sum((t - mx) * (v - my) for t, v in points) / var


async def load(
    urls: list[str], rate: float, duration: float, stats: dict[str, int], latencies: list[float]
) -> None:
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        pending: set[asyncio.Task[None]] = set()

        async def one(i: int) -> None:
            url = urls[i % len(urls)]
            ns = NAMESPACES[i % len(NAMESPACES)]
            key = f"k{random.randrange(KEYS)}"
            roll = random.random()
            started = time.perf_counter()
            try:
                if roll < 0.90:
                    r = await client.get(f"{url}/v1/ns/{ns}/keys/{key}")
                    ok = r.status_code in (200, 404)
                elif roll < 0.98:
                    r = await client.put(
                        f"{url}/v1/ns/{ns}/keys/{key}",
                        content=b"x" * 200,
                        params={"ttl": "120", "tags": f"t{i % 8}"},
                    )
                    ok = r.status_code == 200
                elif roll < 0.99:
                    r = await client.post(f"{url}/v1/ns/{ns}/tags/t{i % 8}/invalidate")
                    ok = r.status_code == 202
                else:
                    r = await client.post(f"{url}/v1/ns/{ns}/invalidate")
                    ok = r.status_code == 202
                why = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                ok, why = False, type(exc).__name__
            latencies.append(time.perf_counter() - started)
            stats["ok" if ok else "errors"] += 1
            if not ok:  # what failed, so an error count can be explained
                stats[f"error: {why}"] = stats.get(f"error: {why}", 0) + 1

        started = time.monotonic()
        sent = 0
        while time.monotonic() - started < duration:
            await asyncio.sleep(max(0.0, started + sent / rate - time.monotonic()))
            task = asyncio.create_task(one(sent))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
        await asyncio.gather(*pending)


async def sample(
    pids: dict[str, int],
    duration: float,
    every: float,
    series: dict[str, list[tuple[float, float]]],
) -> None:
    started = time.monotonic()
    while True:
        now = time.monotonic() - started
        for name, pid in pids.items():
            value = rss_mb(pid)
            if value is not None:
                series.setdefault(name, []).append((now, value))
        if now >= duration:
            return
        await asyncio.sleep(every)


async def run(cluster: dict[str, object], args: argparse.Namespace) -> dict[str, object]:
    urls = [v["url"] for v in cluster["regions"].values()]  # type: ignore[attr-defined]
    pids: dict[str, int] = dict(cluster["processes"])  # type: ignore[call-overload]
    stats = {"ok": 0, "errors": 0}
    latencies: list[float] = []
    series: dict[str, list[tuple[float, float]]] = {}
    await asyncio.gather(
        load(urls, args.rate, args.duration, stats, latencies),
        sample(pids, args.duration, args.every, series),
    )
    latencies.sort()
    rows = {}
    for name, points in sorted(series.items()):
        settled = [p for p in points if p[0] >= args.warmup]
        rows[name] = {
            "start_mb": round(points[0][1], 1),
            "after_warmup_mb": round(settled[0][1], 1) if settled else None,
            "end_mb": round(points[-1][1], 1),
            "slope_mb_per_min": round(slope_per_minute(settled), 2),
        }
    return {
        "requests": stats["ok"] + stats["errors"],
        "errors": stats["errors"],
        "error_kinds": {k: v for k, v in stats.items() if k.startswith("error: ")},
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 2) if latencies else None,
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 2) if latencies else None,
        "processes": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600)
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--every", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=60)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="mrcache-soak-") as tmp,
        running_platform(Path(tmp), REGIONS) as up,
    ):
        result = asyncio.run(run(up.cluster(), args))
    print(
        f"soak: {args.duration:g} s of 90 % GET / 8 % PUT / 2 % invalidations at "
        f"{args.rate:g} req/s over {len(REGIONS)} regions; RSS every {args.every:g} s, "
        f"slope after a {args.warmup:g} s warm-up\n"
    )
    print(
        f"requests {result['requests']:,}  errors {result['errors']}  "
        f"p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms  {result['error_kinds']}\n"
    )
    print(f"{'process':<28} {'start MB':>9} {'warm MB':>9} {'end MB':>9} {'MB/min':>8}")
    processes: dict[str, dict[str, object]] = result["processes"]  # type: ignore[assignment]
    for name, row in processes.items():
        print(
            f"{name:<28} {row['start_mb']!s:>9} {row['after_warmup_mb']!s:>9} "
            f"{row['end_mb']!s:>9} {row['slope_mb_per_min']!s:>8}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
