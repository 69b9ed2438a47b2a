"""A region on Redis Cluster under load: live resharding, and a primary killed outright.

Each test gets its own 6-node cluster (3 primaries, 3 replicas) and a
regional_cache on it, then runs a load of writes and read-your-writes reads:
every worker owns its keys, so a read sent after a write was acknowledged must
return that version or a newer one, or it is a stale read.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from libs.common import keys
from libs.common.processes import free_port, wait_until
from tests.support.platform import Broker, Service, running_service, service_env
from tests.support.redis_cluster import RedisClusterNodes, start_redis_cluster

WORKERS = 12
KEYS_PER_WORKER = 150
# the bound the failover test holds the service to: the cluster's node timeout (2 s)
# plus the replica's election, plus the client noticing the new topology
RECOVERY_BOUND_S = 20.0


@dataclass
class Load:
    """What a load run saw; ``acked`` holds each key's last acknowledged version."""

    ns: str
    acked: dict[str, int] = field(default_factory=dict)
    acked_at: dict[str, float] = field(default_factory=dict)
    errors: list[tuple[float, str]] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    # keys read as absent after a write of theirs was acknowledged
    missing: set[str] = field(default_factory=set)
    reads: int = 0
    writes: int = 0

    @property
    def ops(self) -> int:
        return self.reads + self.writes


async def run_load(url: str, load: Load, stop: asyncio.Event) -> None:
    limits = httpx.Limits(max_connections=WORKERS, max_keepalive_connections=WORKERS)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def worker(w: int) -> None:
            owned = [f"w{w}-k{i}" for i in range(KEYS_PER_WORKER)]
            n = 0
            while not stop.is_set():
                key = owned[n % len(owned)]
                n += 1
                path = f"/v1/ns/{load.ns}/keys/{key}"
                try:
                    if key not in load.acked or random.random() < 0.3:
                        r = await client.put(path, content=f"{key}@{n}".encode())
                        if r.status_code == 200:
                            load.acked[key] = r.json()["version"]
                            load.acked_at[key] = time.monotonic()
                            load.writes += 1
                            continue
                    else:
                        floor = load.acked[key]
                        r = await client.get(path)
                        if r.status_code == 200:
                            load.reads += 1
                            version = int(r.headers["etag"].strip('"'))
                            if version < floor:
                                load.stale.append(f"{key}: read {version} after {floor}")
                            continue
                        if r.status_code == 404:
                            load.missing.add(key)
                            continue
                    load.errors.append((time.monotonic(), f"{r.status_code} {r.text[:200]}"))
                except httpx.HTTPError as exc:
                    load.errors.append((time.monotonic(), repr(exc)))
                await asyncio.sleep(0.01)  # a failing region is not hammered in a tight loop

        await asyncio.gather(*(worker(w) for w in range(WORKERS)))


@contextlib.asynccontextmanager
async def running_load(url: str, prefix: str) -> AsyncIterator[Load]:
    """The load runs against ``url`` until the block ends, then is awaited."""
    load = Load(f"{prefix}-{uuid.uuid4().hex[:8]}")
    stop = asyncio.Event()
    task = asyncio.create_task(run_load(url, load, stop))
    try:
        yield load
    finally:
        stop.set()
        await task


async def ops_reach(load: Load, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while load.ops < count:
        assert time.monotonic() < deadline, f"load made only {load.ops} operations"
        await asyncio.sleep(0.05)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RedisClusterNodes]:
    nodes = start_redis_cluster(tmp_path)
    yield nodes
    nodes.stop()


@pytest.fixture
def cluster_service(
    tmp_path: Path, cluster: RedisClusterNodes, broker: Broker
) -> Iterator[Service]:
    env = service_env("us-east", free_port(), cluster.url, broker.bootstrap, redis_cluster=True)
    with running_service(tmp_path, env) as svc:
        yield svc


async def test_live_resharding_under_load_has_no_errors_and_no_stale_reads(
    cluster: RedisClusterNodes, cluster_service: Service
) -> None:
    async with running_load(cluster_service.url, "rs") as load:
        await ops_reach(load, 2000)
        first, second, third = cluster.primaries()
        # slots (with their entries, indexes and digests) move while the load runs
        await asyncio.to_thread(cluster.reshard, first, second, 3000)
        await asyncio.to_thread(cluster.reshard, second, third, 3000)
        moved_at = load.ops
        await ops_reach(load, moved_at + 500)
    assert load.errors == [], load.errors[:10]
    assert load.stale == [] and load.missing == set(), (load.stale[:10], load.missing)
    assert load.writes > 500 and load.reads > 500
    assert {n.port for n in cluster.primaries()} == {first.port, second.port, third.port}
    assert sum(high - low + 1 for n in cluster.primaries() for low, high in n.slots) == 16384
    print(f"\nresharding 6000 slots under load: {load.writes} writes, {load.reads} reads, 0 errors")


async def test_a_killed_primary_fails_over_and_the_service_recovers_by_itself(
    cluster: RedisClusterNodes, cluster_service: Service
) -> None:
    async with running_load(cluster_service.url, "fo") as load:
        await ops_reach(load, 2000)
        victim = cluster.primary_of(keys.entry(load.ns, "w0-k0"))
        killed_at = time.monotonic()
        cluster.proc_of(victim.port).kill()
        # the cluster promotes the victim's replica on its own ...
        await asyncio.to_thread(
            wait_until,
            lambda: _promoted(cluster, victim.port),
            timeout=RECOVERY_BOUND_S,
            what="replica promoted",
        )
        # ... and the service serves every key again without being told: two error-free
        # seconds of load in a row end the outage
        deadline = killed_at + RECOVERY_BOUND_S
        while True:
            before = len(load.errors)
            ops = load.ops
            await asyncio.sleep(2.0)
            if len(load.errors) == before and load.ops > ops + 100:
                break
            assert time.monotonic() < deadline, (
                f"still failing {time.monotonic() - killed_at:.1f} s after the kill: "
                f"{load.errors[-3:]}"
            )
    after_kill = [t for t, _ in load.errors if t >= killed_at]
    recovery = (max(after_kill) - killed_at) if after_kill else 0.0
    assert [e for t, e in load.errors if t < killed_at] == []
    assert load.stale == [], load.stale[:10]
    # every acknowledged write is still readable, except (Redis replicates asynchronously)
    # the last ones the killed primary acknowledged before its replica had them
    lost, at_risk = await _lost_writes(cluster_service.url, load, killed_at)
    assert not [k for k in {*lost, *load.missing} if k not in at_risk], (lost, load.missing)
    print(
        f"\nprimary :{victim.port} killed: service recovered {recovery:.2f} s after the kill "
        f"(bound {RECOVERY_BOUND_S:.0f} s), {len(after_kill)} failed requests meanwhile, "
        f"{len(lost)} acknowledged writes lost of {len(load.acked)} keys "
        f"({len(at_risk)} acknowledged in the last second before the kill)"
    )


def _promoted(cluster: RedisClusterNodes, victim: int) -> bool:
    try:
        primaries = cluster.primaries()
    except RuntimeError:
        return False
    covered = sum(high - low + 1 for n in primaries for low, high in n.slots)
    return covered == 16384 and victim not in {n.port for n in primaries}


async def _lost_writes(url: str, load: Load, killed_at: float) -> tuple[list[str], set[str]]:
    at_risk = {k for k, t in load.acked_at.items() if killed_at - 1.0 <= t <= killed_at}
    lost = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for key, version in load.acked.items():
            r = await client.get(f"/v1/ns/{load.ns}/keys/{key}")
            held = int(r.headers["etag"].strip('"')) if r.status_code == 200 else 0
            if held < version:
                lost.append(key)
    return lost, at_risk
