"""Warm-up under load: what ``mrcache warm`` costs the target region's users.

``python -m bench.warm [--keys 4000] [--top 2000] [--rate 200]`` starts two
regions (``mrcache up``), writes ``--keys`` keys of 16 KiB in us-east and reads
them there with a Zipf-like skew until us-east ranks its hottest keys. Then,
while eu-west serves a steady open-loop read load of keys it already holds
(bench.loadgen, latency from each request's scheduled time), it measures
eu-west's p50/p99 three times: with no warm-up running, during ``mrcache warm
--top N --rate R`` (paced), and during an unpaced warm-up of another namespace
(the same keys, rate unbounded, batches of 500). The paced figure is the one
the rate limit protects.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import rawhttp
from tests.support.cluster import MRCACHE, Up, running_platform

RESULTS = Path(__file__).parent / "results" / "warm.json"
HELD = 200  # keys eu-west already holds: the users' steady load
VALUE = b"v" * 16 * 1024


async def prepare(us: str, eu: str, namespaces: list[str], keys: int) -> None:
    """Every key in us-east, read with a skew until it ranks them; eu-west's own keys."""
    pool = await rawhttp.Pool(us, 64).open()
    eu_pool = await rawhttp.Pool(eu, 16).open()
    try:
        for ns in namespaces:
            await asyncio.gather(
                *(pool.request("PUT", f"/v1/ns/{ns}/keys/k{i}", VALUE) for i in range(keys))
            )
        weights = [1 / (i + 1) for i in range(keys)]
        for ns in namespaces:
            picks = random.choices(range(keys), weights=weights, k=20 * keys)
            await asyncio.gather(*(pool.request("GET", f"/v1/ns/{ns}/keys/k{i}") for i in picks))
        await asyncio.gather(
            *(pool.request("PUT", f"/v1/ns/users/keys/u{i}", VALUE) for i in range(HELD))
        )
        for i in range(HELD):  # eu-west fills its own copies
            await eu_pool.request("GET", f"/v1/ns/users/keys/u{i}")
    finally:
        await pool.close()
        await eu_pool.close()


def user_load(port: int, workdir: Path, rate: float, seconds: float) -> subprocess.Popen[str]:
    paths = workdir / "users.paths"
    paths.write_text("\n".join(f"/v1/ns/users/keys/u{i}" for i in range(HELD)) + "\n")
    argv = [sys.executable, "-m", "bench.loadgen", "--port", str(port), "--paths-file"]
    argv += [str(paths), "--rate", str(rate), "--duration", str(seconds), "--warmup", "1"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def warm(up: Up, ns_hint: str, top: int, rate: float, batch: int) -> tuple[float, str]:
    started = time.monotonic()
    argv = [*MRCACHE, "warm", "--from", "us-east", "--to", "eu-west", "--top", str(top)]
    argv += ["--ns", ns_hint]
    argv += ["--rate", str(rate), "--batch", str(batch), "--state-dir", str(up.state_dir)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"mrcache warm ({ns_hint}) failed: {done.stderr}")
    return time.monotonic() - started, done.stdout.strip()


def measured(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.loadgen failed: {err}")
    res: dict[str, Any] = json.loads(out)
    return {
        "requests": res["requests"],
        "p50_ms": res["latency_ms"]["p50"],
        "p99_ms": res["latency_ms"]["p99"],
        "errors": res["non_2xx_3xx"] + res["socket_errors"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=4000)
    parser.add_argument("--top", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0, help="paced warm-up, keys/s")
    parser.add_argument("--load", type=float, default=300.0, help="eu-west user reads/s")
    args = parser.parse_args()
    env = {"MRCACHE_HOT_KEY_SAMPLE_EVERY": "1", "MRCACHE_HOT_RANKING_INTERVAL": "1"}
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="mrcache-warm-") as tmp:
        workdir = Path(tmp)
        with running_platform(workdir, ("us-east", "eu-west"), env=env) as up:
            regions = up.cluster()["regions"]
            us, eu = regions["us-east"]["url"], regions["eu-west"]["url"]
            eu_port = int(eu.rsplit(":", 1)[1])
            asyncio.run(prepare(us, eu, ["paced", "unpaced"], args.keys))
            time.sleep(2.5)  # two ranking flushes
            # the warm-up's own length sets how long each load runs
            seconds = args.top / args.rate
            for label, ns_hint, rate, batch in (
                ("no warm-up", None, 0.0, 0),
                (f"warm --rate {args.rate:g}", "paced", args.rate, 10),
                ("warm unpaced", "unpaced", 1e9, 500),
                ("no warm-up, again", None, 0.0, 0),
            ):
                load = user_load(eu_port, workdir, args.load, seconds)
                time.sleep(1.0)  # the load's own warm-up
                if ns_hint is None:
                    took, summary = seconds, "-"
                else:
                    took, summary = warm(up, ns_hint, args.top, rate, batch)
                rows[label] = measured(load) | {"warm_s": round(took, 2), "summary": summary}
    print(
        f"\nwarm-up under load: eu-west serves {args.load:g} reads/s of its own keys while "
        f"mrcache warm copies the {args.top} hottest of {args.keys} keys from us-east "
        f"({os.cpu_count()} CPUs)\n"
    )
    print(f"{'during':<22} {'p50 ms':>7} {'p99 ms':>8} {'errors':>6} {'warm s':>7}")
    for label, row in rows.items():
        print(
            f"{label:<22} {row['p50_ms']:>7.2f} {row['p99_ms']:>8.2f} {row['errors']:>6} "
            f"{row['warm_s']:>7.1f}"
        )
    base = max(rows["no warm-up"]["p99_ms"], rows["no warm-up, again"]["p99_ms"])
    for label in list(rows)[1:3]:
        ratio = rows[label]["p99_ms"] / base
        print(f"{label}: p99 {ratio:.2f}x the higher p99 without; {rows[label]['summary']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2))
    print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
