"""No acknowledged write without a durable event: Kafka down → outbox → drained in order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.common import events, keys
from libs.common.metrics import Metrics
from libs.common.processes import broker_process, free_port, redis_process, wait_port
from libs.common.publisher import EventPublisher
from libs.common.redisclient import RedisClient
from libs.common.settings import KafkaSettings
from services.cli.delayproxy import DelayProxy, Route
from tests.support.kafka import collect_events
from tests.support.platform import (
    Broker,
    RedisServer,
    Service,
    eventually,
    eventually_async,
    running_service,
    service_env,
    start_broker,
    start_redis,
)
from tests.support.relay import own_topics


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


@pytest.mark.timeout(150)
async def test_two_drainers_over_a_slow_broker_lose_no_event(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    """A drain batch that outlasts the drain lock (a slow or distant broker): the second
    drainer takes the lock over and sends the same events. Each used to trim its batch
    at the end, so the events after it were trimmed unsent (22 of 597 lost). Now only the
    lock's owner trims, in the same script that checks it: duplicates, never a loss."""
    broker_port, proxy_port = free_port(), free_port()
    broker = broker_process(broker_port, tmp_path, advertised_port=proxy_port).start()
    # every request to the broker waits 2 x 5 ms: a batch of 200 sends takes ~2 s
    proxy = DelayProxy([Route("127.0.0.1", proxy_port, "127.0.0.1", broker_port)], 0.005)
    await proxy.start()
    redis = own_redis.async_client()
    drainers: list[EventPublisher] = []
    try:
        wait_port(broker, broker_port)
        kafka = await own_topics(f"127.0.0.1:{proxy_port}")
        sent = [
            events.key_event("drain", f"k{i}", i + 1, "set", origin="us-east") for i in range(60)
        ]
        await redis.rpush(keys.outbox("us-east"), *(events.encode(e) for e in sent))
        for _ in range(2):
            drainers.append(
                EventPublisher(
                    kafka,
                    redis,
                    region="us-east",
                    metrics=Metrics(),
                    drain_interval=0.05,
                    lock_ms=600,  # shorter than a batch takes here
                )
            )
        for drainer in drainers:
            await drainer.start()
        # the first drainer stalls longer than its lock: the second takes the lock over
        await asyncio.sleep(0.3)
        proxy.pause()
        await asyncio.sleep(1.0)
        proxy.resume()
        await eventually_async(
            lambda: _empty(redis), timeout=60, what="the outbox drained by two processes"
        )
        got = await collect_events(kafka.bootstrap, want=len(sent), topic=kafka.topic, timeout=30)
        assert {e.id for e in sent} <= {e.id for e in got}, "events were trimmed unsent"
    finally:
        # each step bounded: a hang in teardown must fail this test, not the suite's clock
        for step in [*(d.stop() for d in drainers), redis.aclose(), proxy.close()]:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(step, 15)
        broker.stop()


async def _empty(redis: RedisClient) -> bool:
    return await redis.llen(keys.outbox("us-east")) == 0


async def test_a_drainer_that_lost_its_lock_trims_nothing(own_redis: RedisServer) -> None:
    """The exact interleaving that lost events: A's batch outlives its lock, B takes the
    lock, sends the same batch and trims it; then A trims "its" batch, which is now the
    next one, never sent. The sends are scripted (the lock and the trim are Redis's)."""
    redis = own_redis.async_client()
    outbox = keys.outbox("us-east")
    await redis.delete(outbox, keys.outbox_lock("us-east"))
    queued = [events.key_event("lock", f"k{i}", i + 1, "set", origin="us-east") for i in range(300)]
    await redis.rpush(outbox, *(events.encode(e) for e in queued))
    sent: list[bytes] = []
    gate = asyncio.Event()

    def drainer(*, held_up: bool) -> EventPublisher:
        publisher = EventPublisher(
            KafkaSettings(), redis, region="us-east", metrics=Metrics(), lock_ms=200
        )

        async def send_batch(payloads: list[bytes]) -> None:
            if held_up and not gate.is_set():
                await gate.wait()  # a slow broker: longer than the lock
            sent.extend(payloads)

        publisher._send_batch = send_batch  # type: ignore[method-assign]
        return publisher

    a, b = drainer(held_up=True), drainer(held_up=False)
    try:
        first = asyncio.create_task(a._drain_once())
        await asyncio.sleep(0.4)  # A holds its first send past the lock's 200 ms
        await b._drain_once()  # B takes the lock over and drains everything
        # writes go on meanwhile (Kafka is slow): their events join the outbox
        later = [
            events.key_event("lock", f"n{i}", i + 1, "set", origin="us-east") for i in range(50)
        ]
        await redis.rpush(outbox, *(events.encode(e) for e in later))
        gate.set()
        await first  # A finishes its stale batch: it must not trim the new events
        await b._drain_once()
        assert await redis.llen(outbox) == 0
        assert {e.id for e in [*queued, *later]} <= {events.decode(p).id for p in sent}
    finally:
        await redis.aclose()
