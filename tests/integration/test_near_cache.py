"""Hot keys served from the process's near cache, dropped by the same invalidations.

The service here counts every read (``sample_every=1``), calls a key hot at
1 read/s, and keeps a copy up to 60 s: every change below shows up within a
second, so it is Redis's invalidation messages that drop copies, not the bound.
Runs over a redis-server and over a Redis Cluster (the entry and its namespace
metadata tracked on their own nodes).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from libs.common.processes import free_port
from libs.common.store import RegionStore
from tests.support.platform import Broker, Service, eventually, running_service, service_env
from tests.support.redis_cluster import RedisBackend

PROMPT = 1.0  # seconds: far below the 60 s bound


@pytest.fixture(scope="module")
def near(
    tmp_path_factory: pytest.TempPathFactory, redis_backend: RedisBackend, broker: Broker
) -> Iterator[Service]:
    env = service_env(
        "us-east",
        free_port(),
        redis_backend.url,
        broker.bootstrap,
        redis_cluster=redis_backend.cluster,
        MRCACHE_HOT_KEY_THRESHOLD="1",
        MRCACHE_HOT_KEY_SAMPLE_EVERY="1",
        MRCACHE_NEAR_CACHE_MS="60000",
    )
    with running_service(tmp_path_factory.mktemp("near"), env) as svc:
        yield svc


@pytest.fixture
def http(near: Service) -> Iterator[httpx.Client]:
    with near.client() as c:
        yield c


@pytest.fixture
def ns() -> str:
    return f"n-{uuid.uuid4().hex[:10]}"


def near_hits(http: httpx.Client) -> float:
    found = re.search(
        r'^mrcache_near_cache_results_total\{region="us-east",result="hit"\} (\S+)$',
        http.get("/metrics").text,
        re.M,
    )
    return float(found.group(1)) if found else 0.0


def make_near(http: httpx.Client, ns: str, key: str) -> bytes:
    """Read ``key`` until a read is served from the near cache; returns its value."""

    def served_near() -> bytes | None:
        before = near_hits(http)
        value = http.get(f"/v1/ns/{ns}/keys/{key}").content
        return value if near_hits(http) > before else None

    return eventually(served_near, timeout=10, what=f"{key} served from the near cache")


def reads(http: httpx.Client, ns: str, key: str) -> tuple[int, bytes]:
    r = http.get(f"/v1/ns/{ns}/keys/{key}")
    return r.status_code, r.content


def test_a_hot_key_is_served_from_the_process(http: httpx.Client, ns: str) -> None:
    http.put(f"/v1/ns/{ns}/keys/k", content=b"v1")
    assert make_near(http, ns, "k") == b"v1"
    before = near_hits(http)
    for _ in range(20):
        r = http.get(f"/v1/ns/{ns}/keys/k")
        assert r.content == b"v1" and r.headers["x-cache"] == "HIT"
    assert near_hits(http) >= before + 20
    assert 'mrcache_hot_keys{region="us-east"}' in http.get("/metrics").text


def test_writes_and_deletes_drop_the_copy_at_once(http: httpx.Client, ns: str) -> None:
    http.put(f"/v1/ns/{ns}/keys/k", content=b"v1")
    make_near(http, ns, "k")
    http.put(f"/v1/ns/{ns}/keys/k", content=b"v2")
    eventually(lambda: reads(http, ns, "k") == (200, b"v2"), timeout=PROMPT, what="v2 served")
    assert make_near(http, ns, "k") == b"v2"
    assert http.delete(f"/v1/ns/{ns}/keys/k").status_code == 204
    eventually(lambda: reads(http, ns, "k")[0] == 404, timeout=PROMPT, what="delete seen")


def test_namespace_and_tag_invalidations_drop_copies(http: httpx.Client, ns: str) -> None:
    http.put(f"/v1/ns/{ns}/keys/plain", content=b"p")
    http.put(f"/v1/ns/{ns}/keys/red", content=b"r", params={"tags": "red"})
    make_near(http, ns, "plain")
    make_near(http, ns, "red")
    assert http.post(f"/v1/ns/{ns}/tags/red/invalidate").status_code == 202
    eventually(lambda: reads(http, ns, "red")[0] == 404, timeout=PROMPT, what="tag seen")
    assert reads(http, ns, "plain") == (200, b"p")
    assert http.post(f"/v1/ns/{ns}/invalidate").status_code == 202
    eventually(lambda: reads(http, ns, "plain")[0] == 404, timeout=PROMPT, what="ns seen")


def test_a_change_another_process_applies_drops_the_copy(
    http: httpx.Client, ns: str, redis_backend: RedisBackend
) -> None:
    """As when a relay applies an event: the change reaches Redis, not this process."""
    http.put(f"/v1/ns/{ns}/keys/k", content=b"v1")
    make_near(http, ns, "k")
    held = int(http.get(f"/v1/ns/{ns}/keys/k").headers["etag"].strip('"'))

    async def relay_applies() -> None:
        client = redis_backend.async_client()
        try:
            await RegionStore(client, tombstone_ttl=60).tombstone(ns, "k", held + 1)
        finally:
            await client.aclose()

    asyncio.run(relay_applies())
    eventually(lambda: reads(http, ns, "k")[0] == 404, timeout=PROMPT, what="event seen")


def test_min_version_above_the_copy_goes_to_redis(http: httpx.Client, ns: str) -> None:
    version = http.put(f"/v1/ns/{ns}/keys/k", content=b"v1").json()["version"]
    make_near(http, ns, "k")
    r = http.get(f"/v1/ns/{ns}/keys/k", params={"min_version": str(version + 1)})
    assert r.status_code == 404  # nothing newer exists: never the older copy


def test_losing_the_tracking_connection_drops_every_copy(
    http: httpx.Client, ns: str, redis_backend: RedisBackend, tmp_path: Path
) -> None:
    http.put(f"/v1/ns/{ns}/keys/k", content=b"v1")
    make_near(http, ns, "k")
    client = redis_backend.client()
    try:
        # every subscriber connection of every node: the near cache's invalidation feed
        client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # type: ignore[no-untyped-call]
    finally:
        client.close()

    def dropped() -> bool:
        text = http.get("/metrics").text
        return 'mrcache_near_cache_entries{region="us-east"} 0.0' in text

    eventually(dropped, timeout=5, what="copies dropped")
    assert reads(http, ns, "k") == (200, b"v1")
    # and the near cache comes back by itself
    assert make_near(http, ns, "k") == b"v1"
