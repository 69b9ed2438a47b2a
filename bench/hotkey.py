"""One hot key at full load, with and without the near cache, in one run.

``python -m bench.hotkey`` starts one redis-server, the broker and two
regional_cache processes over that Redis: one with the near cache (the
defaults: a key read 200 times a second by a process is hot, copies at most
50 ms old) and one without. wrk reads the same single key from each in turn
(alternating rounds, same connections, the servers pinned to their own CPU).
Besides req/s and latency it counts the Redis commands each run cost, which is
what a hot key does to its shard. A writer changes the key every 100 ms during
every run, and each run checks that no response carried a version older than
the newest the writer had been acknowledged more than the staleness bound before.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.regional_cache import Placement, ensure_wrk, wait_http, wrk_script
from libs.common.kafka import ensure_topics
from libs.common.processes import (
    ManagedProcess,
    broker_process,
    free_port,
    redis_process,
    service_process,
    wait_port,
)
from libs.common.settings import KafkaSettings
from tests.support.platform import service_env

RESULTS = Path(__file__).parent / "results" / "hotkey.json"
NS, KEY = "bench", "hot"
PATH = f"/v1/ns/{NS}/keys/{KEY}"
BOUND_MS = 50.0


@dataclass
class Result:
    mode: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    redis_commands: int
    writes: int
    stale: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass
class Writer:
    """Writes the key every 100 ms; records when each version was acknowledged."""

    url: str
    acked: list[tuple[float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            n = 0
            while not self.stop.wait(0.1):
                n += 1
                r = client.put(PATH, content=f"value {n}".encode(), params={"ttl": "3600"})
                self.acked.append((time.monotonic(), r.json()["version"]))


def start(workdir: Path, placement: Placement) -> tuple[list[ManagedProcess], dict[str, int], str]:
    procs: list[ManagedProcess] = []

    def launch(proc: ManagedProcess, cpus: tuple[int, ...]) -> ManagedProcess:
        proc.argv = placement.wrap(proc.argv, cpus)
        procs.append(proc)
        return proc.start()

    redis_port, broker_port = free_port(), free_port()
    r = launch(redis_process(redis_port, workdir / "redis"), placement.load_cpus)
    b = launch(broker_process(broker_port, workdir), placement.load_cpus)
    wait_port(r, redis_port)
    wait_port(b, broker_port)
    bootstrap = f"127.0.0.1:{broker_port}"
    asyncio.run(asyncio.wait_for(ensure_topics(KafkaSettings(bootstrap=bootstrap)), 30))
    ports = {}
    for mode, near in (("near cache", "true"), ("no near cache", "false")):
        port = free_port()
        env = service_env("us-east", port, f"redis://127.0.0.1:{redis_port}/0", bootstrap)
        env.update(MRCACHE_NEAR_CACHE=near, MRCACHE_NEAR_CACHE_MS=str(BOUND_MS))
        env["MRCACHE_LOG_LEVEL"] = "warning"
        name = "regional_cache-" + mode.replace(" ", "-")
        proc = launch(
            service_process("services.regional_cache", name, env, workdir),
            placement.server_cpus,
        )
        wait_http(proc, f"http://127.0.0.1:{port}/readyz")
        ports[mode] = port
    return procs, ports, f"redis://127.0.0.1:{redis_port}/0"


def commands(redis_url: str) -> int:
    with redis.Redis.from_url(redis_url) as client:
        return int(client.info("stats")["total_commands_processed"])


def run_wrk(wrk: str, script: Path, port: int, seconds: float, placement: Placement) -> Any:
    argv = [wrk, "-t1", "-c32", f"-d{seconds:g}s", "--latency", "-s", str(script)]
    argv = placement.wrap([*argv, f"http://127.0.0.1:{port}/"], placement.load_cpus)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line.removeprefix("BENCH_JSON "))
    raise RuntimeError(f"wrk gave no result: {done.stderr}")


def stale_reads(port: int, writer: Writer, seconds: float) -> int:
    """Reads (besides wrk's) whose version is older than one acknowledged more than the
    staleness bound before the read was sent."""
    stale = 0
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        while time.monotonic() < deadline:
            sent = time.monotonic()
            version = int(client.get(PATH).headers["etag"].strip('"'))
            floor = max((v for t, v in writer.acked if t < sent - BOUND_MS / 1000), default=0)
            stale += version < floor
            time.sleep(0.005)
    return stale


def one_run(
    wrk: str,
    script: Path,
    mode: str,
    port: int,
    redis_url: str,
    placement: Placement,
    seconds: float,
) -> Result:
    url = f"http://127.0.0.1:{port}"
    httpx.put(f"{url}{PATH}", content=b"first", params={"ttl": "3600"})
    run_wrk(wrk, script, port, 2.0, placement)  # warm-up: the key turns hot
    writer = Writer(url)
    before = commands(redis_url)
    with ThreadPoolExecutor(2) as pool:
        writing = pool.submit(writer.run)
        checking = pool.submit(stale_reads, port, writer, seconds)
        res = run_wrk(wrk, script, port, seconds, placement)
        writer.stop.set()
        writing.result()
        stale = checking.result()
    errors = ("connect", "read", "write", "status", "timeout")
    return Result(
        mode=mode,
        requests=int(res["requests"]),
        seconds=res["duration_us"] / 1e6,
        p50_ms=res["p50_us"] / 1000,
        p99_ms=res["p99_us"] / 1000,
        errors=sum(int(res[k]) for k in errors),
        redis_commands=commands(redis_url) - before,
        writes=len(writer.acked),
        stale=stale,
    )


def measure(args: argparse.Namespace) -> list[Result]:
    wrk = ensure_wrk()
    if wrk is None:
        raise SystemExit("wrk is needed (apt-get install wrk)")
    placement = Placement.choose(pin=True)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="mrcache-hotkey-") as tmp:
        procs, ports, redis_url = start(Path(tmp), placement)
        try:
            script = wrk_script(Path(tmp) / "hot.lua", [PATH], "GET", None)
            for round_no in range(args.rounds):
                for mode, port in ports.items():
                    res = one_run(wrk, script, mode, port, redis_url, placement, args.duration)
                    results.append(res)
                    print(f"  round {round_no + 1} {mode:>13}: {res.rps:,.0f} req/s", flush=True)
        finally:
            for proc in reversed(procs):
                with contextlib.suppress(Exception):
                    proc.stop(grace=5.0)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    results = measure(args)
    print(
        f"\nhot key: one key, wrk -t1 -c32, {args.duration:g} s per run, {args.rounds} rounds; "
        f"a write every 100 ms; near cache bound {BOUND_MS:g} ms\n"
    )
    print(
        f"{'mode':<14} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
        f"{'redis cmds/req':>14} {'stale reads':>11}"
    )
    summary: dict[str, dict[str, float]] = {}
    for mode in ("no near cache", "near cache"):
        runs = [r for r in results if r.mode == mode]
        requests = sum(r.requests for r in runs)
        seconds = sum(r.seconds for r in runs)
        row = {
            "rps": requests / seconds,
            "p50_ms": sorted(r.p50_ms for r in runs)[len(runs) // 2],
            "p99_ms": max(r.p99_ms for r in runs),
            "errors": sum(r.errors for r in runs),
            "redis_commands_per_request": sum(r.redis_commands for r in runs) / requests,
            "stale_reads": sum(r.stale for r in runs),
        }
        summary[mode] = row
        print(
            f"{mode:<14} {row['rps']:>8,.0f} {row['p50_ms']:>7.2f} {row['p99_ms']:>7.2f} "
            f"{row['errors']:>6.0f} {row['redis_commands_per_request']:>14.3f} "
            f"{row['stale_reads']:>11.0f}"
        )
    ratio = summary["near cache"]["rps"] / summary["no near cache"]["rps"]
    load = summary["no near cache"]["redis_commands_per_request"] / max(
        summary["near cache"]["redis_commands_per_request"], 1e-9
    )
    print(
        f"\nnear cache / no near cache req/s: {ratio:.2f}x; Redis commands per request: "
        f"{load:.0f}x fewer"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"summary": summary, "runs": [r.__dict__ for r in results]}, indent=2)
    )
    print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
