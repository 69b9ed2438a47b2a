"""The miss path against a real origin process: single-flight across two processes of a
region, negative caching, stale-while-revalidate and stale-if-error, the breaker, jitter,
and a fill that races a write."""

from __future__ import annotations

import asyncio
import statistics
import uuid
from collections.abc import Iterator

import httpx
import pytest

from libs.common.processes import free_port
from tests.support.origin_server import OriginServer
from tests.support.platform import (
    Broker,
    RedisServer,
    Service,
    eventually,
    service_env,
    start_redis,
    start_service,
)

CONFIG = """
[platform]
regions = ["us-east"]

[namespaces.default]
default_ttl = 3600
ttl_jitter = 0.1

[namespaces.products]
origin = "{origin}"
negative_ttl = 1
stale_while_revalidate = 30

[namespaces.spread]
origin = "{origin}"
stale_while_revalidate = 30
refresh_spread = 8

[namespaces.negatives]
origin = "{origin}"
negative_ttl = 300
"""


@pytest.fixture(scope="module")
def two_processes(
    tmp_path_factory: pytest.TempPathFactory, origin: OriginServer, broker: Broker
) -> Iterator[tuple[Service, Service, RedisServer]]:
    """Two regional_cache processes of one region behind one Redis."""
    workdir = tmp_path_factory.mktemp("miss")
    redis_server = start_redis(workdir)
    config = workdir / "mrcache.toml"
    config.write_text(CONFIG.format(origin=origin.url("/items/{key}")))
    services: list[Service] = []
    try:
        for _ in range(2):
            env = service_env(
                "us-east",
                free_port(),
                redis_server.url,
                broker.bootstrap,
                MRCACHE_CONFIG=str(config),
                MRCACHE_ORIGIN_TIMEOUT="1.5",
                MRCACHE_ORIGIN_RETRIES="1",
            )
            services.append(start_service(workdir, env))
        yield services[0], services[1], redis_server
    finally:
        for svc in services:
            svc.proc.stop()
        assert redis_server.proc is not None
        redis_server.proc.stop()


@pytest.fixture(autouse=True)
def fresh_origin(origin: OriginServer) -> None:
    origin.reset()


def test_a_cold_key_storm_costs_one_origin_request(
    two_processes: tuple[Service, Service, RedisServer], origin: OriginServer
) -> None:
    a, b, _ = two_processes
    # a slow origin keeps the fill in flight while the storm arrives
    origin.control(latency_ms=1000)

    async def storm() -> list[httpx.Response]:
        # httpx's own pool is the slow part here: never time out waiting for it
        limits = httpx.Limits(max_connections=100)
        timeout = httpx.Timeout(60, pool=None)
        async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
            return await asyncio.gather(
                *(
                    client.get(f"{(a if i % 2 else b).url}/v1/ns/products/keys/cold-1")
                    for i in range(1000)
                )
            )

    replies = asyncio.run(storm())
    assert {r.status_code for r in replies} == {200}
    assert {r.content for r in replies} == {b"value-of-cold-1-v1"}
    assert origin.stats()["requests"].get("cold-1") == 1
    assert replies[0].headers["etag"] == '"1"'  # the origin's ETag is the version


def test_negative_caching(
    two_processes: tuple[Service, Service, RedisServer], origin: OriginServer
) -> None:
    a, b, _ = two_processes
    origin.control(absent=["ghost"])
    for svc in (a, b, a, b):
        assert httpx.get(f"{svc.url}/v1/ns/products/keys/ghost").status_code == 404
    assert origin.stats()["requests"]["ghost"] == 1
    origin.control(absent=[])
    # after negative_ttl the origin is asked again, and now has it
    eventually(
        lambda: httpx.get(f"{a.url}/v1/ns/products/keys/ghost").status_code == 200,
        timeout=10,
        what="negative entry expired",
    )


def test_stale_while_revalidate_and_stale_if_error(
    two_processes: tuple[Service, Service, RedisServer], origin: OriginServer
) -> None:
    a, _, _ = two_processes
    origin.control(max_age=1)
    first = httpx.get(f"{a.url}/v1/ns/products/keys/swr")
    assert first.headers["x-cache"] == "MISS"
    origin.control(fail="500")
    stale = eventually(
        lambda: (
            (r := httpx.get(f"{a.url}/v1/ns/products/keys/swr")).headers.get("x-cache") == "STALE"
            and r
        ),
        timeout=10,
        what="entry past its TTL served STALE",
    )
    assert stale.content == b"value-of-swr-v1"
    # the origin is down and nothing is cached: 502
    r = httpx.get(f"{a.url}/v1/ns/products/keys/never-cached")
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "origin_unavailable"
    # the origin is back: the background refresh replaces the stale copy
    origin.control(fail=None, versions={"swr": 2}, max_age=60)
    eventually(
        lambda: httpx.get(f"{a.url}/v1/ns/products/keys/swr").headers.get("etag") == '"2"',
        timeout=10,
        what="refreshed after the origin recovered",
    )


def test_refreshes_of_keys_that_expired_together_are_spread(
    two_processes: tuple[Service, Service, RedisServer], origin: OriginServer
) -> None:
    a, b, _ = two_processes
    names = [f"s{i}" for i in range(30)]
    origin.control(max_age=1)
    for name in names:
        assert httpx.get(f"{a.url}/v1/ns/spread/keys/{name}").headers["x-cache"] == "MISS"
    origin.reset()
    origin.control(max_age=60)

    def past_ttl() -> bool:  # they were written together: the first one stands for all
        return httpx.get(f"{b.url}/v1/ns/spread/keys/{names[0]}").headers["x-cache"] == "STALE"

    eventually(past_ttl, timeout=10, what="the copies are past their TTL")
    # both processes see every key stale at once: each defers its refresh
    for name in names:
        for svc in (a, b):
            assert httpx.get(f"{svc.url}/v1/ns/spread/keys/{name}").status_code == 200
    # each waits up to 8 s: far fewer than half have gone to the origin yet
    assert origin.stats()["total"] < len(names) // 2, "refreshes were not spread"
    eventually(
        lambda: all(
            httpx.get(f"{a.url}/v1/ns/spread/keys/{n}").headers["x-cache"] == "HIT" for n in names
        ),
        timeout=20,
        what="every key refreshed",
    )
    # one refresh per key in the region: the deferred one of the other process saw it done
    assert origin.stats()["total"] <= len(names) + 2


def test_ttl_jitter_spreads_expiry(two_processes: tuple[Service, Service, RedisServer]) -> None:
    a, _, _ = two_processes
    ttls = [
        httpx.put(f"{a.url}/v1/ns/jitter/keys/k{i}", content=b"x", params={"ttl": "100"}).json()[
            "ttl"
        ]
        for i in range(200)
    ]
    assert min(ttls) >= 90 and max(ttls) <= 110
    assert statistics.pstdev(ttls) > 3  # uniform on [90, 110] has a deviation of 5.8


def test_an_origin_fill_racing_a_write_never_installs_the_old_value(
    two_processes: tuple[Service, Service, RedisServer], origin: OriginServer
) -> None:
    a, b, _ = two_processes
    origin.control(latency_ms=800)

    async def race() -> httpx.Response:
        async with httpx.AsyncClient(timeout=30) as client:
            slow = asyncio.create_task(client.get(f"{a.url}/v1/ns/products/keys/raced"))
            await asyncio.sleep(0.2)  # the origin fetch is in flight
            put = await client.put(f"{b.url}/v1/ns/products/keys/raced", content=b"written")
            assert put.status_code == 200
            return await slow

    reply = asyncio.run(race())
    assert reply.content == b"written"
    assert httpx.get(f"{a.url}/v1/ns/products/keys/raced").content == b"written"
    assert httpx.get(f"{b.url}/v1/ns/products/keys/raced").content == b"written"


def test_the_breaker_opens_and_recovers(
    two_processes: tuple[Service, Service, RedisServer], origin: OriginServer
) -> None:
    a, _, _ = two_processes
    origin.control(fail="500")
    for i in range(30):
        assert httpx.get(f"{a.url}/v1/ns/products/keys/b{i}").status_code == 502
    metrics = httpx.get(f"{a.url}/metrics").text
    assert 'outcome="rejected"' in metrics, "the breaker fails fast once open"
    seen = origin.stats()["total"]
    assert seen < 30, "an open breaker spares the origin"
    origin.control(fail=None)
    eventually(
        lambda: httpx.get(f"{a.url}/v1/ns/products/keys/b-after").status_code == 200,
        timeout=20,
        what="breaker half-open probe succeeds and closes it",
    )


def test_a_refresh_of_an_unchanged_object_renews_it(
    two_processes: tuple[Service, Service, RedisServer], origin: OriginServer
) -> None:
    a, _, _ = two_processes
    origin.control(max_age=1)
    assert httpx.get(f"{a.url}/v1/ns/products/keys/same").headers["x-cache"] == "MISS"
    eventually(
        lambda: httpx.get(f"{a.url}/v1/ns/products/keys/same").headers.get("x-cache") == "STALE",
        timeout=10,
        what="served stale past its TTL",
    )
    origin.control(max_age=60)  # same version (ETag "1") from now on
    eventually(
        lambda: httpx.get(f"{a.url}/v1/ns/products/keys/same").headers.get("x-cache") == "HIT",
        timeout=10,
        what="the background refresh renewed the same version",
    )
    assert origin.stats()["requests"]["same"] <= 3


def test_a_tag_invalidation_voids_a_copy_served_in_its_stale_window(
    two_processes: tuple[Service, Service, RedisServer], origin: OriginServer
) -> None:
    """A copy past its TTL served STALE (the origin is down) obeys a tag invalidation
    like a fresh one: it was served STALE after it before the fix."""
    a, _, _ = two_processes
    origin.control(fail="500")
    path = f"{a.url}/v1/ns/products/keys/tagged-stale"
    assert httpx.put(path, content=b"tagged", params={"tags": "t", "ttl": "1"}).status_code == 200
    eventually(
        lambda: httpx.get(path).headers.get("x-cache") == "STALE",
        timeout=10,
        what="the copy served STALE past its TTL",
    )
    assert httpx.post(f"{a.url}/v1/ns/products/tags/t/invalidate").status_code == 202
    after = httpx.get(path)
    assert after.content != b"tagged"
    assert after.status_code == 502  # nothing valid, and the origin is down


def test_a_namespace_invalidation_voids_remembered_404s_and_deletions(
    two_processes: tuple[Service, Service, RedisServer], origin: OriginServer
) -> None:
    """A negative entry (the origin's 404) and a deletion are answers of their namespace
    too: after the namespace is invalidated the key is filled again from the origin,
    which has a row now. Both answered 404 for their whole lifetime before the fix."""
    a, b, _ = two_processes
    ns = f"{a.url}/v1/ns/negatives"
    origin.control(absent=["late", "gone"])
    assert httpx.get(f"{ns}/keys/late").status_code == 404
    origin.control(absent=["gone"])
    assert httpx.get(f"{ns}/keys/late").status_code == 404  # remembered for 300 s
    origin.control(absent=[])
    assert httpx.get(f"{ns}/keys/gone").status_code == 200
    assert httpx.delete(f"{ns}/keys/gone").status_code == 204
    assert httpx.get(f"{ns}/keys/gone").status_code == 404  # deleted, though the origin has it
    assert httpx.post(f"{ns}/invalidate").status_code == 202
    for key in ("late", "gone"):
        got = httpx.get(f"{b.url}/v1/ns/negatives/keys/{key}")
        assert got.status_code == 200, key
        assert got.content == f"value-of-{key}-v1".encode()
    # a deletion after the invalidation holds again
    assert httpx.delete(f"{ns}/keys/gone").status_code == 204
    assert httpx.get(f"{ns}/keys/gone").status_code == 404


def test_a_fill_voided_by_an_invalidation_during_its_fetch_fetches_again(
    two_processes: tuple[Service, Service, RedisServer], origin: OriginServer
) -> None:
    """The invalidation is newer than what the fetch began with, so the fill asks again;
    it answered 404 (a value it had just fetched voided) before the fix."""
    a, b, _ = two_processes
    origin.control(latency_ms=800)

    async def race() -> httpx.Response:
        async with httpx.AsyncClient(timeout=30) as client:
            slow = asyncio.create_task(client.get(f"{a.url}/v1/ns/negatives/keys/voided"))
            await asyncio.sleep(0.3)  # the origin fetch is in flight
            inv = await client.post(f"{b.url}/v1/ns/negatives/invalidate")
            assert inv.status_code == 202
            return await slow

    reply = asyncio.run(race())
    assert reply.status_code == 200, reply.text
    assert reply.content == b"value-of-voided-v1"
    assert origin.stats()["requests"]["voided"] == 2


def test_a_batch_get_fills_at_most_its_budget_from_the_origin(
    two_processes: tuple[Service, Service, RedisServer], origin: OriginServer
) -> None:
    """A batchGet of 1,000 cold keys made 1,000 origin requests; now at most
    batch_fill_limit (100), the others come back not fetched and a later read gets them."""
    svc, _, _ = two_processes
    prefix = uuid.uuid4().hex[:6]
    keys = [f"batch-{prefix}-{i}" for i in range(300)]
    with svc.client() as client:
        r = client.post("/v1/ns/products/keys:batchGet", json={"keys": keys})
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert [i["key"] for i in items] == keys
        fetched = [i for i in items if i["fetched"]]
        assert len(fetched) == 100 and all(i["found"] for i in fetched)
        assert all(not i["found"] for i in items if not i["fetched"])
        assert origin.stats()["total"] == 100
        # what was filled is cached now; the next batch fills the next 100
        again = client.post("/v1/ns/products/keys:batchGet", json={"keys": keys}).json()
        assert sum(1 for i in again["items"] if i["found"]) == 200
        assert origin.stats()["total"] == 200
