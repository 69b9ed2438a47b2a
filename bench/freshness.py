"""Freshness under churn: 200 writes/s for 60 s with 1 % of events dropped in one region.

``python -m bench.freshness [--rate 200] [--duration 60] [--interval 10]``.
Starts the local platform (``mrcache up``, three regions) with
``relay_drop_rate = {"eu-west" = 0.01}`` and a short reconcile interval.
While us-east takes the writes (rotating over a key set, so every region holds
older copies), readers in every region keep copies cached the way users would,
and the consistency meter probes each sampled write in every region 1 s after it
and one interval (+2 s) after it. Prints the meter's table: counts, the stale
rate's 95 % upper bound and the nines it supports.
Targets (issue): >= 99.99 % fresh after 1 s, 100 % after one interval.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from libs.common.settings import KafkaSettings
from services.meter.meter import Meter, measure
from services.meter.report import TABLE_HEADERS
from tests.support.cluster import running_platform

RESULTS = Path(__file__).parent / "results" / "freshness.json"
KEYS = 2000
CONFIG = """
[platform]
regions = ["us-east", "eu-west", "ap-south"]

[reconciler]
interval = {interval}

[faults]
relay_drop_rate = {{ "eu-west" = {drop} }}
"""


async def write(url: str, rate: float, duration: float, stats: dict[str, int]) -> None:
    """The writes, paced, from their own process (bench.loadgen): in this one, the meter's
    reads would hold them back below the rate asked for."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with tempfile.NamedTemporaryFile("w", suffix=".paths", delete=False) as paths:
        paths.write("".join(f"/v1/ns/churn/keys/k{i}\n" for i in range(KEYS)))
    argv = [sys.executable, "-m", "bench.loadgen", "--host", host, "--port", port]
    argv += ["--method", "PUT", "--paths-file", paths.name, "--body-bytes", "16"]
    argv += ["--rate", str(rate), "--duration", str(duration), "--warmup", "0"]
    argv += ["--connections", "32"]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    Path(paths.name).unlink(missing_ok=True)
    res = json.loads(out)
    stats["write_errors"] += res["non_2xx_3xx"] + res["socket_errors"]
    stats["writes"] += res["requests"] - stats["write_errors"]


async def read(url: str, rate: float, duration: float, stats: dict[str, int]) -> None:
    """A region's users: keep copies of the keys cached there."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            await asyncio.sleep(1 / rate)
            r = await client.get(f"/v1/ns/churn/keys/k{random.randrange(KEYS)}")
            stats["reads" if r.status_code in (200, 404) else "read_errors"] += 1


async def run(cluster: dict[str, object], args: argparse.Namespace) -> dict[str, object]:
    regions = {r: v["url"] for r, v in cluster["regions"].items()}  # type: ignore[attr-defined]
    stats = {"writes": 0, "write_errors": 0, "reads": 0, "read_errors": 0}
    meter = Meter(
        KafkaSettings(bootstrap=str(cluster["kafka"])),
        regions,
        sample_rate=args.sample_rate,
        delays=(1.0, args.interval + 2.0),
    )
    # warm every region's copies first, so dropped events have something to leave stale
    async with httpx.AsyncClient(timeout=10) as client:
        for i in range(KEYS):
            await client.put(f"{regions['us-east']}/v1/ns/churn/keys/k{i}", content=b"v0")
        for url in regions.values():
            for i in range(KEYS):
                await client.get(f"{url}/v1/ns/churn/keys/k{i}")
    load = [asyncio.create_task(write(regions["us-east"], args.rate, args.duration, stats))]
    load += [
        asyncio.create_task(read(url, args.read_rate, args.duration, stats))
        for url in regions.values()
    ]
    report = await measure(meter, duration=args.duration)
    await asyncio.gather(*load)
    return {"report": report.as_dict(), "load": stats, "table": report.table_rows()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--interval", type=float, default=10)
    parser.add_argument("--drop", type=float, default=0.01)
    parser.add_argument("--read-rate", type=float, default=50, help="reads/s per region")
    parser.add_argument("--sample-rate", type=float, default=0.25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mrcache-fresh-") as tmp:
        config = CONFIG.format(interval=args.interval, drop=args.drop)
        with running_platform(Path(tmp), ("us-east", "eu-west", "ap-south"), config=config) as up:
            result = asyncio.run(run(up.cluster(), args))
    print(
        f"freshness under churn: {args.rate:g} writes/s for {args.duration:g} s in us-east, "
        f"{args.drop:.0%} of events dropped by eu-west's relay, reconcile interval "
        f"{args.interval:g} s; readers {args.read_rate:g}/s per region; meter sample rate "
        f"{args.sample_rate:g}\n"
    )
    headers = TABLE_HEADERS
    table: list[tuple[str, ...]] = result["table"]  # type: ignore[assignment]
    rows = [headers, *table]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(headers))]
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    report: dict[str, Any] = result["report"]  # type: ignore[assignment]
    print(
        f"\n{report['sampled_events']} invalidations sampled {report['sampled']}; skipped "
        f"{report['skipped']}; published late {report['published_late']}. STALE ≤ is the "
        "stale rate's upper bound at 95% confidence, NINES the nines it supports."
    )
    print(f"load: {result['load']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str))
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
