"""What the consistency meter itself costs per check, and that a long run stays bounded.

``python -m bench.meter_cost [--checks 1000000]``: one Meter (two regions, one delay)
is offered key events as fast as it takes them, its probes answered in-process
(``httpx.MockTransport``: the regions' own cost is not what is measured here, only
the meter's: sampling, scheduling, batching, judging, counting, the gauges). Prints
the meter's CPU per check, checks per second, and its RSS at the start, half-way and
the end: a cell reaches 10^6 checks with memory flat (counters, a bounded window,
bounded queues), and ``max_check_rate`` caps a run's cost whatever the write rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from pathlib import Path
from typing import Any

import httpx

from libs.common import events
from libs.common.settings import KafkaSettings
from services.meter.meter import Meter

RESULTS = Path(__file__).parent / "results" / "meter_cost.json"


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _answer(request: httpx.Request) -> httpx.Response:
    items = json.loads(request.content)["items"]
    probes = [{"state": "hit", "version": 7, "generation": 0, "tags": {}} for _ in items]
    return httpx.Response(200, json={"items": probes})


async def run(checks: int, batch: int) -> dict[str, Any]:
    meter = Meter(
        KafkaSettings(),
        {"us-east": "http://us", "eu-west": "http://eu"},
        sample_rate=1.0,
        delays=[0.01],
        max_lateness=30.0,
        transport=httpx.MockTransport(_answer),
    )
    await meter.start(follow=False)
    rss = [_rss_mb()]
    cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    try:
        for offered in range(0, checks, batch):
            for i in range(offered, min(checks, offered + batch)):
                meter.offer(
                    events.key_event("default", f"k{i % 50_000}", 7, "set", origin="us-east")
                )
            # let the meter keep up, as a topic's pace would
            while meter.pending > 4 * batch:
                await asyncio.sleep(0.001)
            if offered and offered % (checks // 2) < batch:
                rss.append(_rss_mb())
        assert await meter.drain(120)
    finally:
        await meter.stop()
    wall = time.monotonic() - wall0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    rss.append(_rss_mb())
    report = meter.report()
    row = next(r for r in report.rows if r.region == "eu-west" and not r.home)
    probes = sum(r.checks for r in report.rows)
    return {
        "checks_per_cell": row.checks,
        "fresh": row.fresh,
        "late": row.late,
        "probes_total": probes,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "cpu_us_per_probe": round(
            cpu / max(1, sum(r.checks for r in meter.report().rows)) * 1e6, 1
        ),
        "probes_per_s": round(sum(r.checks for r in meter.report().rows) / wall),
        "rss_mb": [round(x, 1) for x in rss],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--checks", type=int, default=1_000_000, help="events offered")
    parser.add_argument("--batch", type=int, default=2_000)
    args = parser.parse_args()
    result = asyncio.run(run(args.checks, args.batch))
    print(
        f"meter cost: {result['checks_per_cell']:,} checks in the eu-west cell "
        f"({result['probes_total']:,} probes over 2 regions) in {result['wall_s']} s; "
        f"{result['cpu_us_per_probe']} µs of meter CPU per probe, "
        f"{result['probes_per_s']:,} probes/s; late {result['late']}; "
        f"RSS MB start / half-way / end: {result['rss_mb']}"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
