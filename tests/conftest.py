"""Session fixtures: one real redis-server and one real broker, on free loopback ports.

``REDIS_URL`` / ``KAFKA_BOOTSTRAP`` point the suite at external ones instead.
Nothing here skips: under CI=true a missing redis-server or broker fails loudly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from libs.common.processes import free_port
from tests.support.platform import (
    Broker,
    RedisServer,
    Service,
    running_service,
    service_env,
    start_broker,
    start_redis,
)


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
def service(workdir: Path, redis_server: RedisServer, broker: Broker) -> Iterator[Service]:
    """One regional_cache (us-east) shared by the read/write tests of the session."""
    env = service_env("us-east", free_port(), redis_server.url, broker.bootstrap)
    with running_service(workdir, env) as svc:
        yield svc


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()
