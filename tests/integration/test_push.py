"""Events pushed to the other regions directly (``[platform] push_events``), next to Kafka.

No relay runs here: whatever reaches eu-west's Redis came by the push. The same
events are on the topic too (Kafka stays the durable path); applying is
idempotent by version, so which copy arrives first does not matter."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from libs.common import events, keys
from libs.common.kafka import ensure_topics
from libs.common.processes import free_port
from libs.common.settings import KafkaSettings
from tests.support.platform import (
    Broker,
    RedisServer,
    Service,
    eventually,
    running_service,
    service_env,
)

CONFIG = """
[platform]
regions = ["us-east", "eu-west"]
push_events = true

[namespaces.plain]
home_region = "us-east"

[namespaces.rep]
home_region = "us-east"
propagation = "replicate"
"""


class Pair:
    def __init__(self, us: Service, eu: Service, eu_redis: redis.Redis) -> None:
        self.us, self.eu, self.eu_redis = us, eu, eu_redis

    def held_in_eu(self, ns: str, key: str) -> dict[bytes, bytes]:
        return self.eu_redis.hgetall(keys.entry(ns, key))  # type: ignore[return-value]


@contextlib.contextmanager
def _start_pair(
    workdir: Path, redis_server: RedisServer, broker: Broker, *, eu_url: str | None = None
) -> Iterator[tuple[Service, Service | None]]:
    config = workdir / "mrcache.toml"
    config.write_text(CONFIG)
    topic = f"push-{uuid.uuid4().hex[:8]}"
    asyncio.run(ensure_topics(KafkaSettings(bootstrap=broker.bootstrap, topic=topic)))
    base = redis_server.url.rsplit("/", 1)[0]
    ports = {"us-east": free_port(), "eu-west": free_port()}
    urls = {r: f"http://127.0.0.1:{p}" for r, p in ports.items()}
    if eu_url is not None:
        urls["eu-west"] = eu_url

    def env(region: str, db: int) -> dict[str, str]:
        return service_env(
            region,
            ports[region],
            f"{base}/{db}",
            broker.bootstrap,
            MRCACHE_CONFIG=str(config),
            MRCACHE_KAFKA__TOPIC=topic,
            MRCACHE_REGION_URLS=json.dumps(urls),
        )

    with running_service(workdir / "us", env("us-east", 11)) as us:
        if eu_url is not None:
            yield us, None
            return
        with running_service(workdir / "eu", env("eu-west", 12)) as eu:
            yield us, eu


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, broker: Broker
) -> Iterator[Pair]:
    workdir = tmp_path_factory.mktemp("push")
    (workdir / "us").mkdir()
    (workdir / "eu").mkdir()
    eu_redis = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/12")
    with _start_pair(workdir, redis_server, broker) as (us, eu):
        assert eu is not None
        yield Pair(us, eu, eu_redis)
    eu_redis.close()


def test_a_write_reaches_the_other_region_without_kafka_consumers(pair: Pair) -> None:
    key = f"k-{uuid.uuid4().hex[:8]}"
    with pair.us.client() as client:
        put = client.put(f"/v1/ns/plain/keys/{key}", content=b"v1")
        assert put.status_code == 200, put.text
        version = put.json()["version"]
    held = eventually(lambda: pair.held_in_eu("plain", key), timeout=10, what="pushed marker")
    # a superseded marker at the write's version: the next read refills from the home
    assert held[b"ver"] == str(version).encode() and held[b"tomb"] == b"m"
    with pair.us.client() as client:
        assert client.delete(f"/v1/ns/plain/keys/{key}").status_code == 204
    eventually(
        lambda: pair.held_in_eu("plain", key).get(b"tomb") == b"1", timeout=10, what="tombstone"
    )


def test_replicated_values_and_invalidations_are_pushed(pair: Pair) -> None:
    key = f"r-{uuid.uuid4().hex[:8]}"
    with pair.us.client() as client:
        assert client.put(f"/v1/ns/rep/keys/{key}", content=b"value").status_code == 200
    eventually(lambda: pair.held_in_eu("rep", key).get(b"v") == b"value", timeout=10, what="value")
    with pair.eu.client() as client:
        got = client.get(f"/v1/ns/rep/keys/{key}")
        assert got.status_code == 200 and got.headers["x-cache"] == "HIT"
    with pair.us.client() as client:
        generation = client.post("/v1/ns/rep/invalidate").json()["generation"]

    def generation_in_eu() -> bool:
        raw = pair.eu_redis.hget(keys.namespace_meta("rep"), keys.NS_GENERATION)
        return raw is not None and int(raw) >= generation

    eventually(generation_in_eu, timeout=10, what="generation pushed")
    with pair.eu.client() as client:
        # invalidated everywhere, and no origin to fill from
        assert client.get(f"/v1/ns/rep/keys/{key}").status_code == 404


def test_bad_lines_are_counted_and_the_rest_applied(pair: Pair) -> None:
    key = f"b-{uuid.uuid4().hex[:8]}"
    good = events.encode(events.key_event("plain", key, 42, "set", origin="us-east"))
    body = b"\n".join([b"not json", good, b'{"v": 1, "type": "key"}', b""])
    with pair.eu.client() as client:
        reply = client.post("/internal/v1/events", content=body)
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"applied": 1, "stale": 0, "invalid": 2}
        again = client.post("/internal/v1/events", content=good)  # the Kafka copy, later
        assert again.json() == {"applied": 0, "stale": 1, "invalid": 0}
    assert pair.held_in_eu("plain", key)[b"ver"] == b"42"


def test_a_region_that_is_down_never_slows_or_fails_a_write(
    tmp_path: Path, redis_server: RedisServer, broker: Broker
) -> None:
    (tmp_path / "us").mkdir()
    nobody = f"http://127.0.0.1:{free_port()}"
    with (
        _start_pair(tmp_path, redis_server, broker, eu_url=nobody) as (us, _),
        us.client() as client,
    ):
        for i in range(20):
            put = client.put(f"/v1/ns/plain/keys/down-{i}", content=b"x")
            assert put.status_code == 200, put.text

        def failures() -> float:
            text = client.get("/metrics").text
            return sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("mrcache_push_events_total") and 'outcome="failed"' in line
            )

        eventually(failures, timeout=10, what="failed pushes counted")
