"""Session fixtures: one real redis-server, one real Redis Cluster (6 redis-server
processes) and one real broker, on free loopback ports.

The contract suite (every test of ``service``, ``client`` or ``redis_backend``)
runs over both Redis backends. ``REDIS_URL`` / ``KAFKA_BOOTSTRAP`` point the
suite at an external Redis and broker instead. Nothing here skips: under CI=true
a missing redis-server or broker fails loudly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.common.processes import free_port
from tests.support.origin_server import OriginServer
from tests.support.platform import (
    Broker,
    RedisServer,
    Service,
    running_service,
    service_env,
    start_broker,
    start_redis,
)
from tests.support.redis_cluster import RedisBackend, RedisClusterNodes, start_redis_cluster


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mrcache")


@pytest.fixture(scope="session")
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    external = os.environ.get("REDIS_URL")
    if external:
        port = int(external.rsplit(":", 1)[1].split("/")[0])
        yield RedisServer(port, None)
        return
    server = start_redis(workdir)
    yield server
    assert server.proc is not None
    server.proc.stop()


@pytest.fixture(scope="session")
def redis_cluster(workdir: Path) -> Iterator[RedisClusterNodes]:
    nodes = start_redis_cluster(workdir)
    yield nodes
    nodes.stop()


@pytest.fixture(scope="session", params=["standalone", "cluster"])
def redis_backend(request: pytest.FixtureRequest) -> RedisBackend:
    """The region's Redis of the contract suite: a redis-server, then a Redis Cluster."""
    if request.param == "cluster":
        cluster: RedisClusterNodes = request.getfixturevalue("redis_cluster")
        return cluster
    server: RedisServer = request.getfixturevalue("redis_server")
    return server


@pytest.fixture(scope="session")
def broker(workdir: Path) -> Iterator[Broker]:
    external = os.environ.get("KAFKA_BOOTSTRAP")
    if external:
        yield Broker(int(external.rsplit(":", 1)[1]), None, workdir)
        return
    server = start_broker(workdir)
    yield server
    if server.proc is not None:
        server.proc.stop()


@pytest.fixture(scope="session")
def service(workdir: Path, redis_backend: RedisBackend, broker: Broker) -> Iterator[Service]:
    """One regional_cache (us-east) per Redis backend, shared by the read/write tests."""
    env = service_env(
        "us-east",
        free_port(),
        redis_backend.url,
        broker.bootstrap,
        redis_cluster=redis_backend.cluster,
    )
    with running_service(workdir, env) as svc:
        yield svc


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OriginServer]:
    """A real HTTP origin process for the tests of one module (steered with ``control``)."""
    server = OriginServer().start(tmp_path_factory.mktemp("origin"))
    yield server
    server.stop()
