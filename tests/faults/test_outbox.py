"""No acknowledged write without a durable event: Kafka down → outbox → drained in order."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.common.processes import free_port, redis_process, wait_port
from tests.support.kafka import collect_events
from tests.support.platform import (
    Broker,
    RedisServer,
    Service,
    eventually,
    running_service,
    service_env,
    start_broker,
    start_redis,
)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_redis(tmp_path)
    yield server
    assert server.proc is not None
    server.proc.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    server = start_broker(tmp_path)
    yield server
    if server.proc is not None:
        server.proc.stop()


@pytest.fixture
def lonely_service(tmp_path: Path, own_redis: RedisServer, own_broker: Broker) -> Iterator[Service]:
    env = service_env("us-east", free_port(), own_redis.url, own_broker.bootstrap)
    with running_service(tmp_path, env) as svc:
        yield svc


async def test_writes_while_kafka_is_down_reach_kafka_when_it_returns(
    lonely_service: Service, own_broker: Broker
) -> None:
    assert own_broker.proc is not None
    own_broker.proc.stop()
    with lonely_service.client() as client:
        ready = eventually(
            lambda: client.get("/readyz").status_code == 503 or None,
            what="readyz reports kafka down",
        )
        assert ready
        assert "kafka" in client.get("/readyz").json()["error"]["message"]
        versions = []
        for i in range(30):
            r = client.put(f"/v1/ns/outbox/keys/k{i % 7}", content=f"v{i}".encode())
            assert r.status_code == 200, r.text  # acknowledged: the event sits in the outbox
            versions.append((f"k{i % 7}", r.json()["version"]))
        assert client.delete("/v1/ns/outbox/keys/k0").status_code == 204
        assert client.post("/v1/ns/outbox/tags/t/invalidate").status_code == 202
        assert client.get("/v1/ns/outbox/keys/k1").status_code == 200  # reads keep working
        assert client.get("/v1/info").json()["events"]["outbox_active"] is True

        own_broker.restart()
        got = await collect_events(own_broker.bootstrap, want=32, ns="outbox", timeout=60)
        assert len(got) == 32
        # Kafka orders per partition, and one key's events share one: compare per key
        key_events = [e for e in got if e.type == "key"]
        for key in {k for k, _ in versions}:
            sent = [v for k, v in versions if k == key]
            if key == "k0":
                sent.append(max(e.version for e in key_events if e.op == "delete"))
            assert [e.version for e in key_events if e.key == key] == sent, key
        assert [e.type for e in got].count("tag") == 1
        eventually(
            lambda: client.get("/readyz").status_code == 200 or None, what="ready again", timeout=30
        )
        eventually(
            lambda: client.get("/v1/info").json()["events"]["outbox_active"] is False or None,
            what="outbox drained",
            timeout=30,
        )
        metrics = client.get("/metrics").text
        assert "mrcache_outbox_events_total" in metrics


def test_service_starts_while_kafka_is_down(tmp_path: Path, own_redis: RedisServer) -> None:
    dead = f"127.0.0.1:{free_port()}"
    env = service_env("us-east", free_port(), own_redis.url, dead)
    with running_service(tmp_path, env, wait_ready=False) as svc, svc.client() as client:
        eventually(lambda: client.get("/healthz").status_code == 200 or None, what="alive")
        r = client.get("/readyz")
        assert r.status_code == 503 and "kafka" in r.json()["error"]["message"]
        assert client.put("/v1/ns/x/keys/k", content=b"v").status_code == 200
        assert client.get("/v1/ns/x/keys/k").content == b"v"


def test_redis_down_is_a_503_not_a_500(tmp_path: Path, own_broker: Broker) -> None:
    server = start_redis(tmp_path)
    env = service_env("us-east", free_port(), server.url, own_broker.bootstrap)
    try:
        with running_service(tmp_path, env) as svc, svc.client() as client:
            assert server.proc is not None
            server.proc.stop()
            for method, path in [
                ("GET", "/v1/ns/x/keys/k"),
                ("PUT", "/v1/ns/x/keys/k"),
                ("DELETE", "/v1/ns/x/keys/k"),
                ("POST", "/v1/ns/x/invalidate"),
            ]:
                r = client.request(method, path, content=b"v")
                assert r.status_code == 503, (method, r.text)
                assert r.json()["error"]["code"] == "store_unavailable"
            r = client.get("/readyz")
            assert r.status_code == 503 and "redis" in r.json()["error"]["message"]
    finally:
        if server.proc is not None:
            server.proc.stop()


def test_versions_keep_increasing_after_redis_and_service_restart(
    tmp_path: Path, own_broker: Broker
) -> None:
    server = start_redis(tmp_path)
    env = service_env("us-east", free_port(), server.url, own_broker.bootstrap)
    try:
        with running_service(tmp_path, env) as svc, svc.client() as client:
            v1 = client.put("/v1/ns/r/keys/k", content=b"1").json()["version"]
            client.delete("/v1/ns/r/keys/k")
            gen1 = client.post("/v1/ns/r/invalidate").json()["generation"]
            assert server.proc is not None
            server.proc.stop()  # no persistence: Redis comes back empty
            server = start_redis_on(tmp_path, server.port)
            eventually(
                lambda: client.get("/readyz").status_code == 200 or None,
                what="service reconnects to redis",
            )
            v2 = client.put("/v1/ns/r/keys/k", content=b"2").json()["version"]
            assert v2 > v1
            assert client.post("/v1/ns/r/invalidate").json()["generation"] > gen1
        with running_service(tmp_path, env) as svc, svc.client() as client:
            assert client.put("/v1/ns/r/keys/k", content=b"3").json()["version"] > v2
    finally:
        if server.proc is not None:
            server.proc.stop()


def start_redis_on(workdir: Path, port: int) -> RedisServer:
    proc = redis_process(port, workdir / f"redis-again-{port}").start()
    wait_port(proc, port)
    return RedisServer(port, proc)


def test_publish_failure_metric_is_counted(lonely_service: Service, own_broker: Broker) -> None:
    assert own_broker.proc is not None
    own_broker.proc.stop()
    with lonely_service.client() as client:
        assert client.put("/v1/ns/m/keys/k", content=b"x").status_code == 200
        text = client.get("/metrics").text
        assert "mrcache_publish_failures_total" in text
        line = next(
            li for li in text.splitlines() if li.startswith("mrcache_publish_failures_total")
        )
        assert float(line.split()[-1]) >= 1
