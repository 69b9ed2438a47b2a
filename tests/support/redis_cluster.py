"""A local Redis Cluster for tests, and the operations a test does to it.

Three primaries with a replica each, made by ``redis-cli --cluster create``;
tests reshard it with ``redis-cli --cluster reshard`` and fail a primary over
by killing it, exactly as an operator (or a crash) would.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import redis
from redis.crc import key_slot

from libs.common.processes import (
    ManagedProcess,
    create_cluster,
    free_port,
    redis_cli_bin,
    redis_cluster_processes,
    wait_port,
    wait_until,
)
from libs.common.redisclient import RedisClient, make_redis
from libs.common.settings import RedisSettings
from tests.support.platform import RedisServer


@dataclass(frozen=True)
class ClusterNode:
    node_id: str
    port: int
    primary: bool
    # slot ranges served, for a primary
    slots: tuple[tuple[int, int], ...]

    def serves(self, slot: int) -> bool:
        return any(low <= slot <= high for low, high in self.slots)


@dataclass
class RedisClusterNodes:
    ports: list[int]
    procs: list[ManagedProcess]
    cluster = True

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def settings(self) -> RedisSettings:
        return RedisSettings(url=self.url, cluster=True)

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster.from_url(self.url)

    def async_client(self) -> RedisClient:
        return make_redis(self.settings())

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()

    def cli(self, *args: str, port: int | None = None, timeout: float = 120.0) -> str:
        # a node that runs (the cluster may have lost one), or the first of a cluster
        # this test did not start
        running = [p for p, proc in zip(self.ports, self.procs, strict=False) if proc.alive()]
        alive = port or (running or self.ports)[0]
        done = subprocess.run(
            [redis_cli_bin(), "-p", str(alive), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def nodes(self) -> list[ClusterNode]:
        """The topology as a live node sees it (``CLUSTER NODES``), failed nodes left out."""
        found = []
        for line in self.cli("cluster", "nodes").splitlines():
            parts = line.split()
            if len(parts) < 8 or "fail" in parts[2] or "noaddr" in parts[2]:
                continue
            port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
            ranges = []
            for item in parts[8:]:
                if item.startswith("["):
                    continue  # a slot being migrated
                low, _, high = item.partition("-")
                ranges.append((int(low), int(high or low)))
            found.append(ClusterNode(parts[0], port, "master" in parts[2], tuple(ranges)))
        return found

    def primaries(self) -> list[ClusterNode]:
        return sorted((n for n in self.nodes() if n.primary), key=lambda n: n.port)

    def primary_of(self, key: bytes) -> ClusterNode:
        slot = key_slot(key)
        return next(n for n in self.primaries() if n.serves(slot))

    def proc_of(self, port: int) -> ManagedProcess:
        return self.procs[self.ports.index(port)]

    def agreed(self, port: int) -> bool:
        """Whether every node agrees on the slots and none is left open mid-migration."""
        try:
            out = self.cli("--cluster", "check", f"127.0.0.1:{port}", port=port)
        except RuntimeError:
            return False
        return "[ERR]" not in out and "[WARNING]" not in out

    def reshard(self, source: ClusterNode, target: ClusterNode, slots: int) -> str:
        """Move ``slots`` slots from ``source`` to ``target`` with their keys, live; returns
        once every node agrees on the new layout."""
        out = self.cli(
            "--cluster",
            "reshard",
            f"127.0.0.1:{target.port}",
            "--cluster-from",
            source.node_id,
            "--cluster-to",
            target.node_id,
            "--cluster-slots",
            str(slots),
            "--cluster-yes",
            "--cluster-pipeline",
            "50",
            port=target.port,
        )
        wait_until(lambda: self.agreed(target.port), timeout=30, what="cluster agreement")
        return out


# what the contract suite runs over
RedisBackend: TypeAlias = RedisServer | RedisClusterNodes


def start_redis_cluster(workdir: Path, *, nodes: int = 6) -> RedisClusterNodes:
    ports = [free_port() for _ in range(nodes)]
    procs = redis_cluster_processes(ports, workdir / f"cluster-{ports[0]}")
    try:
        for proc, port in zip(procs, ports, strict=True):
            proc.start()
            wait_port(proc, port)
        create_cluster(ports)
    except BaseException:
        for proc in procs:
            proc.stop()
        raise
    return RedisClusterNodes(ports, procs)
