"""Reconcile time for 100,000 and 1,000,000 keys, with no differences and with 1 %.

``python -m bench.reconciler [--sizes 100000,1000000]``. Two regions, each its
own redis-server. Both are loaded with an entry per key, the applied-version
index and leaf digests exactly as the Lua scripts keep them (computed here with
``libs.common.digest``, so loading a million keys takes seconds rather than
a million script calls); the differing region then has 1 % of its keys at an
older version. A pass runs with the real :class:`Reconciler` and the repairs
go through the real scripts. Targets (issue): 1M keys, no differences, under
5 s; 1 % differences, under 2x that. The figure that matters is the ratio of
the 1 % pass to the clean pass, against the key count's ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from redis.asyncio import Redis

from libs.common import keys
from libs.common.config import PlatformConfig
from libs.common.digest import DIGEST_MOD, h
from libs.common.processes import ManagedProcess, free_port, redis_process, wait_port
from libs.common.store import RegionStore
from services.reconciler.reconcile import Reconciler

NS = "bench"
RESULTS = Path(__file__).parent / "results" / "reconciler.json"


def leaves_for(
    count: int,
    version_of: dict[int, int] | None = None,
) -> dict[str, dict[str, int]]:
    leaves: dict[str, dict[str, int]] = defaultdict(dict)
    for i in range(count):
        key = f"key:{i}"
        leaf = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:4]
        version = (version_of or {}).get(i, 1_000_000 + i)
        leaves[leaf][key] = version
    return leaves


async def load(redis: Redis, leaves: dict[str, dict[str, int]], *, entries: bool) -> None:
    """The index and digests as the scripts keep them, and (``entries``) an entry hash per
    key, so the reconciler's SCAN walks a keyspace of realistic size."""
    await redis.flushall()
    digests: dict[str, dict[str, int]] = defaultdict(dict)
    pipe = redis.pipeline(transaction=False)
    for n, (leaf, versions) in enumerate(leaves.items(), 1):
        pipe.hset(keys.index(NS, leaf), mapping={k: str(v) for k, v in versions.items()})
        bucket = leaf[: keys.BUCKET_DIGITS]
        digests[bucket][leaf] = sum(h(k, v) for k, v in versions.items()) % DIGEST_MOD
        if entries:
            for key, version in versions.items():
                pipe.hset(
                    keys.entry(NS, key, leaf),
                    mapping={"v": b"x" * 64, "ct": "text/plain", "ver": version, "gen": 0},
                )
        if n % 500 == 0:
            await pipe.execute()
    for bucket, leaf_digests in digests.items():
        pipe.hset(keys.digest(NS, bucket), mapping={k: str(v) for k, v in leaf_digests.items()})
    # the registries the store keeps next to its scripts
    pipe.sadd(keys.buckets(NS), *digests)
    pipe.sadd(keys.NAMESPACES, NS)
    await pipe.execute()


async def one_size(count: int, ports: dict[str, int], *, entries: bool) -> list[dict[str, object]]:
    clients = {r: Redis(host="127.0.0.1", port=p) for r, p in ports.items()}
    stores = {r: RegionStore(c, tombstone_ttl=3600) for r, c in clients.items()}
    cfg = PlatformConfig.model_validate({"platform": {"regions": list(ports)}})
    rows: list[dict[str, object]] = []
    try:
        started = time.perf_counter()
        clean = leaves_for(count)
        for client in clients.values():
            await load(client, clean, entries=entries)
        load_s = time.perf_counter() - started

        reconciler = Reconciler(cfg, stores, batch=256, pause=0.0)
        # the first pass (and every tenth) also scans the keyspace; the others read the
        # registries only
        for _ in range(2):
            report = await reconciler.run_once()
            rows.append(
                {
                    "keys": count,
                    "differences": "0, full scan" if report.full_scan else 0,
                    "seconds": round(report.seconds, 3),
                    "leaves_compared": report.leaves_compared,
                    "keys_compared": report.keys_compared,
                    "repairs": sum(report.repairs.values()),
                    "load_seconds": round(load_s, 1),
                }
            )

        stale = {i: 1_000_000 + i - 1 for i in range(0, count, 100)}  # 1 % one version behind
        await load(clients["eu-west"], leaves_for(count, stale), entries=entries)
        report = await reconciler.run_once()
        rows.append(
            {
                "keys": count,
                "differences": len(stale),
                "seconds": round(report.seconds, 3),
                "leaves_compared": report.leaves_compared,
                "keys_compared": report.keys_compared,
                "repairs": sum(report.repairs.values()),
            }
        )
        after = await reconciler.run_once()
        rows.append(
            {
                "keys": count,
                "differences": "after repair",
                "seconds": round(after.seconds, 3),
                "leaves_compared": after.leaves_compared,
                "keys_compared": after.keys_compared,
                "repairs": sum(after.repairs.values()),
            }
        )
    finally:
        for client in clients.values():
            await client.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument(
        "--no-entries",
        action="store_true",
        help="load only the index and digests, no entry hashes (a smaller keyspace to SCAN)",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    procs: list[ManagedProcess] = []
    with tempfile.TemporaryDirectory(prefix="mrcache-bench-") as tmp:
        try:
            ports = {}
            for region in ("us-east", "eu-west"):
                port = free_port()
                proc = redis_process(port, Path(tmp) / region).start()
                procs.append(proc)
                wait_port(proc, port)
                ports[region] = port
            rows = []
            for size in sizes:
                rows += asyncio.run(one_size(size, ports, entries=not args.no_entries))
        finally:
            for proc in procs:
                proc.stop()
    print(
        "reconciler benchmark: 2 regions (2 redis-server), one namespace, 65,536 leaves in "
        f"4,096 buckets, {'no entry hashes' if args.no_entries else 'an entry hash per key'}\n"
    )
    print(
        f"{'keys':>9} | {'differences':>14} | {'pass s':>7} | {'leaves cmp':>10} | "
        f"{'keys cmp':>9} | {'repairs':>7}"
    )
    print("-" * 72)
    for row in rows:
        print(
            f"{row['keys']:>9,} | {row['differences']!s:>14} | {row['seconds']:>7} | "
            f"{row['leaves_compared']:>10,} | {row['keys_compared']:>9,} | {row['repairs']:>7,}"
        )
    by = {(r["keys"], r["differences"]): float(str(r["seconds"])) for r in rows}
    for size in sizes:
        clean, diff = by[(size, 0)], by[(size, size // 100)]
        scan = by[(size, "0, full scan")]
        line = (
            f"{size:,} keys: clean pass {clean:.2f} s ({scan:.2f} s with the full scan of every "
            f"tenth pass), 1 % pass {diff:.2f} s ({size // 100:,} repairs)"
        )
        if size >= 1_000_000:
            line += (
                f"; targets: clean < 5 s {'MET' if clean < 5 else 'NOT MET'}, "
                f"1 % < 10 s {'MET' if diff < 10 else 'NOT MET'}"
            )
        print(line)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2))
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
