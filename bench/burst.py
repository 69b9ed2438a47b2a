"""Burst drain: how fast every region applies a system of record's burst of key events.

``python -m bench.burst [--events 20000,200000] [--value-bytes 64]``

Starts ``mrcache up`` (regions us-east, eu-west, ap-south; namespace ``bulk`` in
``replicate`` mode, so each event carries its value and every region installs
it), then for each size N:

* **floor** (same broker, same Redis, same run): a bare aiokafka consumer of a
  12-partition topic of its own that decodes each event (``events.decode``) and
  writes it with one pipelined ``SET`` per event, one pipeline per fetched batch —
  the least a relay has to do. N events are published first (as a bulk loader
  would: one producer, batches per partition, acks=all), then the consumer is
  timed from the first record to the last;
* **relays**: the same N events (new keys, new versions) published to
  ``mrcache.invalidations`` while the relays run; each region's drain is timed
  from the first publish until its relay counts N events applied
  (``mrcache_relay_events_total``, polled every 20 ms), with its relay's CPU
  seconds and peak memory. The embedded broker takes events slower than relays
  apply them at first, so the relay's own speed is what it applied after the
  last event was published, over the time it then took.

Prints events/s per region and its own speed's ratio to the floor, then checks a sample of
keys in every region (value and version installed) and that no event was dead-
lettered: a drain that loses events is a failure (exit 1), not a figure.
``--json FILE`` writes the figures too.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from bench.proc import by_kind, cpu_all, cpu_s, peak_rss_mb
from bench.propagation import run_async, up_argv
from libs.common import events, keys
from libs.common.kafka import client_options, ensure_topics, make_consumer
from libs.common.processes import ManagedProcess, free_base_port, wait_until
from libs.common.settings import KafkaSettings

REGIONS = ("us-east", "eu-west", "ap-south")
NS = "bulk"
CONFIG = f"""
[namespaces.{NS}]
propagation = "replicate"
versions = "source"
default_ttl = 3600
"""


@dataclass
class RegionDrain:
    seconds: float
    # all n over the time from the first publish to the last applied
    events_per_s: float
    # after the publishing ended: the relay's own speed
    own_events_per_s: float
    ratio_to_floor: float
    relay_cpu_s: float
    relay_peak_rss_mb: float


@dataclass
class SizeResult:
    events: int
    publish_s: float
    floor_s: float
    floor_events_per_s: float
    regions: dict[str, RegionDrain] = field(default_factory=dict)
    dead_lettered: int = 0
    sample_errors: list[str] = field(default_factory=list)
    # CPU seconds of each kind of process from the first publish to the last drain: what
    # the machine spent, and so what the gap to the floor is made of
    cpu_by_role: dict[str, float] = field(default_factory=dict)


def _events(n: int, value: bytes, base_version: int, tag: str) -> list[tuple[bytes, bytes]]:
    """(message key, message value) of n key events with values, as a system of record
    publishes them: one new key each, its own version."""
    now = int(time.time() * 1000)
    b64 = base64.b64encode(value).decode()
    out = []
    for i in range(n):
        key = f"{tag}-{i}"
        body = {
            "v": 1,
            "type": "key",
            "ns": NS,
            "key": key,
            "version": base_version + i,
            "op": "set",
            "origin": "sor",
            "ts_ms": now,
            "id": f"{tag}-{i}",
            "value_b64": b64,
            "content_type": "application/octet-stream",
            "ttl": 3600,
        }
        out.append((f"{NS}/{key}".encode(), orjson.dumps(body)))
    return out


async def _publish(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    """Publish everything (acks=all) as a bulk loader would: batches built per partition
    (the keys' default partitioner, as Kafka clients use), several in flight; seconds
    taken. Per-message ``send()`` costs this process more CPU than the relays it feeds."""
    producer = AIOKafkaProducer(**client_options(KafkaSettings(bootstrap=bootstrap)), acks="all")
    await producer.start()
    started = time.monotonic()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        partitioner = DefaultPartitioner()
        by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
        for key, value in messages:
            by_partition.setdefault(partitioner(key, partitions, partitions), []).append(
                (key, value)
            )
        pending = []
        for partition, items in by_partition.items():
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    pending.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            pending.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.monotonic() - started


async def _floor(bootstrap: str, redis_url: str, n: int, value: bytes) -> tuple[float, float]:
    """The bare relay: decode + one pipelined SET per event per fetched batch."""
    settings = KafkaSettings(bootstrap=bootstrap, topic=f"burst-floor-{uuid.uuid4().hex[:8]}")
    await ensure_topics(settings)
    consumer = make_consumer(settings, group_id=None, max_poll_records=500)
    tps = [TopicPartition(settings.topic, p) for p in range(12)]
    consumer.assign(tps)
    await consumer.start()
    await consumer.seek_to_beginning(*tps)
    redis = Redis.from_url(redis_url)
    done = 0
    # published first: this broker takes events slower than a consumer reads them, so
    # timing both at once would measure the publishing
    publish_s = await _publish(bootstrap, settings.topic, _events(n, value, 1, "floor"))
    started = time.monotonic()
    try:
        while done < n:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            for records in batches.values():
                async with redis.pipeline(transaction=False) as pipe:
                    for record in records:
                        event = events.decode(record.value)
                        pipe.set(f"floor:{event.ns}:{event.key}", event.value() or b"")
                    await pipe.execute()
                done += len(records)
        elapsed = time.monotonic() - started
    finally:
        await consumer.stop()
        await redis.aclose()
    return elapsed, publish_s


def _scrape(text: str, region: str) -> tuple[float, float]:
    """(events the relay finished with: applied + stale + invalid, of them invalid)."""
    total = invalid = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != "mrcache_relay_events":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("region") == region:
                if sample.labels.get("outcome") in ("applied", "stale", "invalid"):
                    total += sample.value
                if sample.labels.get("outcome") == "invalid":
                    invalid += sample.value
    return total, invalid


async def _drain(cluster: dict[str, Any], n: int, value: bytes, floor_rate: float) -> SizeResult:
    relays = {r: cluster["services"][f"invalidation_relay:{r}"] for r in REGIONS}
    pids = {r: cluster["processes"][f"invalidation_relay:{r}"] for r in REGIONS}
    base_version = int(time.time() * 1_000_000)
    tag = f"b{uuid.uuid4().hex[:6]}"
    messages = _events(n, value, base_version, tag)
    async with httpx.AsyncClient(timeout=5) as http:

        async def counts() -> dict[str, tuple[float, float]]:
            got = await asyncio.gather(*(http.get(f"{relays[r]}/metrics") for r in REGIONS))
            return {r: _scrape(resp.text, r) for r, resp in zip(REGIONS, got, strict=True)}

        before = await counts()
        cpu0 = {r: cpu_s(pids[r]) for r in REGIONS}
        every = {name: int(pid) for name, pid in cluster["processes"].items()}
        every_cpu0 = cpu_all(every)
        started = time.monotonic()
        publishing = asyncio.create_task(
            _publish(cluster["kafka"], "mrcache.invalidations", messages)
        )
        finished: dict[str, float] = {}
        cpu: dict[str, float] = {}
        # what each relay had applied when the last event was published, and when
        published: tuple[float, dict[str, tuple[float, float]]] | None = None
        deadline = started + max(120.0, n / 200)
        now = await counts()
        while len(finished) < len(REGIONS) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            now = await counts()
            if published is None and publishing.done():
                published = (time.monotonic() - started, now)
            for r in REGIONS:
                if r not in finished and now[r][0] - before[r][0] >= n:
                    finished[r] = time.monotonic() - started
                    cpu[r] = cpu_s(pids[r]) - cpu0[r]
        publish_s = await publishing
        spent = by_kind(every_cpu0, cpu_all(every))
    result = SizeResult(n, publish_s, n / floor_rate, floor_rate)
    result.cpu_by_role = {role: round(seconds, 2) for role, seconds in spent.items()}
    result.dead_lettered = int(sum(now[r][1] - before[r][1] for r in REGIONS))
    for r in REGIONS:
        if r not in finished:
            result.sample_errors.append(f"{r}: drained {now[r][0] - before[r][0]:.0f} of {n}")
            continue
        rate = n / finished[r]
        # the relay's own speed: what it applied once nothing limited it but itself
        own = rate
        if published is not None and finished[r] - published[0] > 0.5:
            left = n - (published[1][r][0] - before[r][0])
            own = left / (finished[r] - published[0])
        result.regions[r] = RegionDrain(
            finished[r], rate, own, own / floor_rate, cpu[r], peak_rss_mb(pids[r])
        )
    result.sample_errors += await _check_sample(cluster, tag, n, base_version, value)
    return result


async def _check_sample(
    cluster: dict[str, Any], tag: str, n: int, base_version: int, value: bytes
) -> list[str]:
    """Every region holds a sample of the burst's keys at their versions, with their value."""
    errors = []
    sample = random.Random(n).sample(range(n), min(n, 200))
    for region in REGIONS:
        redis = Redis.from_url(cluster["regions"][region]["redis"])
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for i in sample:
                    pipe.hmget(keys.entry(NS, f"{tag}-{i}"), ["ver", "v"])
                replies = await pipe.execute()
        finally:
            await redis.aclose()
        for i, (ver, got) in zip(sample, replies, strict=True):
            if ver is None or int(ver) != base_version + i or got != value:
                errors.append(f"{region}: {tag}-{i} holds version {ver!r}")
    return errors[:10]


def render(results: list[SizeResult]) -> str:
    lines = [
        "| events | publish s | floor events/s | region | drain s | events/s "
        "| events/s after publish | x floor "
        "| relay CPU s | CPU µs/event | relay peak RSS MB |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for res in results:
        for region, d in res.regions.items():
            lines.append(
                f"| {res.events:,} | {res.publish_s:.2f} | {res.floor_events_per_s:,.0f} "
                f"| {region} | {d.seconds:.2f} | {d.events_per_s:,.0f} "
                f"| {d.own_events_per_s:,.0f} | {d.ratio_to_floor:.2f} "
                f"| {d.relay_cpu_s:.2f} | {d.relay_cpu_s / res.events * 1e6:.0f} "
                f"| {d.relay_peak_rss_mb:.0f} |"
            )
        roles = ", ".join(
            f"{k} {v:.1f}" for k, v in sorted(res.cpu_by_role.items(), key=lambda kv: -kv[1])
        )
        lines.append(f"\nCPU seconds during the drain, by process kind: {roles}")
        verdict = "ok" if not res.sample_errors and not res.dead_lettered else "FAILED"
        lines.append(
            f"\n{res.events:,} events: {verdict}; dead-lettered {res.dead_lettered}; "
            f"sample errors {res.sample_errors or 'none'}\n"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="20000,200000", help="burst sizes, comma-separated")
    parser.add_argument("--value-bytes", type=int, default=64)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep-state", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.events.split(",")]
    value = bytes(random.Random(1).randrange(256) for _ in range(args.value_bytes))
    state_dir = Path(tempfile.mkdtemp(prefix="mrcache-burst-")).absolute()
    config = state_dir / "mrcache.toml"
    config.write_text(CONFIG)
    argv_up = up_argv(REGIONS, free_base_port(len(REGIONS)), state_dir, config)
    up = ManagedProcess("mrcache-up", argv_up, state_dir / "mrcache-up.log")
    results: list[SizeResult] = []
    try:
        up.start()
        cluster_file = state_dir / "cluster.json"
        wait_until(cluster_file.exists, timeout=120, what="mrcache up", alive=up.alive)
        cluster = json.loads(cluster_file.read_text())
        print(f"[burst] platform up: {', '.join(REGIONS)}; broker {cluster['kafka']}", flush=True)
        for n in sizes:
            print(f"[burst] floor: bare consumer, {n:,} events ...", flush=True)
            redis_url = cluster["regions"][REGIONS[0]]["redis"]
            floor_s, _ = run_async(_floor(cluster["kafka"], redis_url, n, value))
            floor_rate = n / floor_s
            print(f"[burst] floor {floor_rate:,.0f} events/s; relays, {n:,} events ...", flush=True)
            res = run_async(_drain(cluster, n, value, floor_rate))
            results.append(res)
            print(render([res]), flush=True)
    finally:
        code = up.stop(grace=45.0)
        if code not in (0, None):
            print(f"[burst] mrcache up exited with {code}; log: {up.log_path}", flush=True)
        if not args.keep_state:
            shutil.rmtree(state_dir, ignore_errors=True)
    print("\n## Burst drain\n\n" + render(results), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    failed = any(r.sample_errors or r.dead_lettered for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
