"""Three regions as real processes (three Redis, one broker, caches and relays via mrcache up).

Propagation is awaited by polling with deadlines, never by sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from aiokafka import AIOKafkaProducer

from libs.common import events, keys
from libs.common.config import NamespaceConfig
from libs.common.homes import home_region
from tests.support.cluster import Up, running_platform
from tests.support.origin_server import OriginServer
from tests.support.platform import eventually

REGIONS = ("us-east", "eu-west", "ap-south")
CONFIG = """
[platform]
regions = ["us-east", "eu-west", "ap-south"]

[namespaces.default]
home_region = "us-east"

[namespaces.euro]
home_region = "eu-west"

[namespaces.hashed]
home_region = "hash"

[namespaces.repl]
home_region = "us-east"
propagation = "replicate"

[namespaces.cat]
home_region = "us-east"
origin = "{origin}"

[namespaces.rows]
home_region = "us-east"
origin = "{origin}"
versions = "source"

[faults]
control = true

[[relay.debezium]]
topic = "dbserver1.public.users"
ns = "users"
key = "{{id}}"
version = "version"
"""
DEADLINE = 20.0


class Regions:
    def __init__(self, up: Up) -> None:
        cluster = up.cluster()
        self.kafka: str = cluster["kafka"]
        self.services: dict[str, str] = cluster["services"]
        self.urls = {name: cluster["regions"][name]["url"] for name in REGIONS}
        self.redis = {
            name: redis.Redis.from_url(cluster["regions"][name]["redis"]) for name in REGIONS
        }
        self.http = {
            name: httpx.Client(base_url=url, timeout=10.0) for name, url in self.urls.items()
        }

    def close(self) -> None:
        for client in self.http.values():
            client.close()
        for r in self.redis.values():
            r.close()

    def put(self, region: str, ns: str, key: str, body: bytes, **params: str) -> dict[str, Any]:
        r = self.http[region].put(f"/v1/ns/{ns}/keys/{key}", content=body, params=params)
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data

    def get(self, region: str, ns: str, key: str, **kw: Any) -> httpx.Response:
        return self.http[region].get(f"/v1/ns/{ns}/keys/{key}", **kw)

    def version_in(self, region: str, ns: str, key: str) -> int | None:
        r = self.get(region, ns, key)
        return int(r.headers["etag"].strip('"')) if r.status_code == 200 else None

    def held(self, region: str, ns: str, key: str) -> dict[bytes, bytes]:
        held: dict[bytes, bytes] = self.redis[region].hgetall(keys.entry(ns, key))  # type: ignore[assignment]
        return held

    def publish(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        async def send() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=self.kafka, acks="all")
            await producer.start()
            try:
                await producer.send_and_wait(topic, value, key=key)
            finally:
                await producer.stop()

        asyncio.run(send())


@contextlib.contextmanager
def dropping(regions: Regions, region: str) -> Iterator[None]:
    """``region``'s relay acknowledges every event without applying it, meanwhile: what
    reaches the region then comes from the reconciler (or a fill), never the relay."""
    relay = regions.services[f"invalidation_relay:{region}"]
    assert httpx.put(f"{relay}/v1/faults", json={"drop_rate": 1.0}).status_code == 200
    try:
        yield
    finally:
        assert httpx.put(f"{relay}/v1/faults", json={"drop_rate": 0.0}).status_code == 200


def bind(region: str, check: Callable[[str], object]) -> Callable[[], object]:
    """``check`` for one region, as a no-argument poll for :func:`eventually`."""
    return lambda: check(region)


@pytest.fixture(scope="module")
def regions(tmp_path_factory: pytest.TempPathFactory, origin: OriginServer) -> Iterator[Regions]:
    workdir = tmp_path_factory.mktemp("regions")
    config = CONFIG.format(origin=origin.url("/items/{key}"))
    with running_platform(workdir, REGIONS, config=config) as up:
        platform = Regions(up)
        try:
            yield platform
        finally:
            platform.close()


@pytest.fixture
def key() -> str:
    return f"k-{uuid.uuid4().hex[:10]}"


def test_remote_fill_then_hit(regions: Regions, key: str) -> None:
    v = regions.put("us-east", "default", key, b"hello")["version"]
    for region in ("eu-west", "ap-south"):
        first = regions.get(region, "default", key)
        assert first.status_code == 200
        assert first.headers["x-cache"] == "MISS"
        assert first.headers["etag"] == f'"{v}"' and first.content == b"hello"
        second = regions.get(region, "default", key)
        assert second.headers["x-cache"] == "HIT"
        assert second.headers["x-cache-region"] == region


def test_updates_reach_every_region(regions: Regions, key: str) -> None:
    regions.put("us-east", "default", key, b"v1")
    for region in REGIONS:
        assert regions.get(region, "default", key).content == b"v1"  # every region holds v1
    v2 = regions.put("us-east", "default", key, b"v2")["version"]
    for region in REGIONS:
        eventually(
            bind(region, lambda r: regions.version_in(r, "default", key) == v2),
            timeout=DEADLINE,
            what=f"v2 visible in {region}",
        )
        assert regions.get(region, "default", key).content == b"v2"


def test_delete_from_any_region_reaches_every_region(regions: Regions, key: str) -> None:
    regions.put("us-east", "default", key, b"x")
    for region in REGIONS:
        assert regions.get(region, "default", key).status_code == 200
    r = regions.http["ap-south"].delete(f"/v1/ns/default/keys/{key}")
    assert r.status_code == 204
    assert r.headers["x-cache-forwarded"] == "ap-south"
    for region in REGIONS:
        eventually(
            bind(region, lambda r: regions.get(r, "default", key).status_code == 404),
            timeout=DEADLINE,
            what=f"delete visible in {region}",
        )


def test_forwarded_writes_apply_at_home(regions: Regions, key: str) -> None:
    r = regions.http["eu-west"].put(
        f"/v1/ns/default/keys/{key}",
        content=b"via eu",
        headers={"Content-Type": "text/plain"},
        params={"ttl": "60"},
    )
    assert r.status_code == 200
    assert r.headers["x-cache-forwarded"] == "eu-west"
    assert r.json()["home_region"] == "us-east"
    home = regions.get("us-east", "default", key)
    assert home.headers["x-cache"] == "HIT" and home.content == b"via eu"
    assert home.headers["content-type"] == "text/plain"
    # conditional headers travel with the forward
    stale = regions.http["ap-south"].put(
        f"/v1/ns/default/keys/{key}", content=b"x", headers={"If-None-Match": "*"}
    )
    assert stale.status_code == 412
    # a namespace homed in eu-west: us-east forwards there
    e = regions.http["us-east"].put(f"/v1/ns/euro/keys/{key}", content=b"euro")
    assert e.status_code == 200 and e.json()["home_region"] == "eu-west"


def test_namespace_invalidation_reaches_every_region(regions: Regions) -> None:
    ns = f"n{uuid.uuid4().hex[:8]}"
    for i in range(5):
        regions.put("us-east", ns, f"k{i}", b"x")
    for region in REGIONS:
        assert all(regions.get(region, ns, f"k{i}").status_code == 200 for i in range(5))
    r = regions.http["eu-west"].post(f"/v1/ns/{ns}/invalidate")  # forwarded to us-east
    assert r.status_code == 202
    for region in REGIONS:
        eventually(
            bind(
                region,
                lambda r: all(regions.get(r, ns, f"k{i}").status_code == 404 for i in range(5)),
            ),
            timeout=DEADLINE,
            what=f"namespace invalidation in {region}",
        )


def test_tag_invalidation_reaches_every_region(regions: Regions) -> None:
    ns = f"t{uuid.uuid4().hex[:8]}"
    regions.put("us-east", ns, "tagged", b"x", tags="sale")
    regions.put("us-east", ns, "plain", b"y")
    for region in REGIONS:
        assert regions.get(region, ns, "tagged").status_code == 200
        assert regions.get(region, ns, "plain").status_code == 200
    assert regions.http["ap-south"].post(f"/v1/ns/{ns}/tags/sale/invalidate").status_code == 202
    for region in REGIONS:
        eventually(
            bind(region, lambda r: regions.get(r, ns, "tagged").status_code == 404),
            timeout=DEADLINE,
            what=f"tag invalidation in {region}",
        )
        assert regions.get(region, ns, "plain").status_code == 200


def test_hash_homes_spread_and_serve_everywhere(regions: Regions) -> None:
    homes = {}
    for i in range(30):
        body = regions.put(REGIONS[i % 3], "hashed", f"h{i}", f"v{i}".encode())
        homes[f"h{i}"] = body["home_region"]
    assert set(homes.values()) == set(REGIONS)
    for i in range(0, 30, 3):
        for region in REGIONS:
            assert regions.get(region, "hashed", f"h{i}").content == f"v{i}".encode()


def test_replicate_mode_installs_values_without_a_fill(regions: Regions, key: str) -> None:
    v = regions.put("us-east", "repl", key, b"replicated", ttl="60")["version"]
    for region in ("eu-west", "ap-south"):
        eventually(
            bind(
                region,
                lambda r: (
                    regions.held(r, "repl", key).get(b"ver") == str(v).encode()
                    and b"v" in regions.held(r, "repl", key)
                ),
            ),
            timeout=DEADLINE,
            what=f"value installed in {region}",
        )
        got = regions.get(region, "repl", key)
        assert got.headers["x-cache"] == "HIT" and got.content == b"replicated"


def test_read_your_writes_with_min_version(regions: Regions, key: str) -> None:
    regions.put("us-east", "default", key, b"v1")
    assert regions.get("eu-west", "default", key).content == b"v1"
    v2 = regions.put("us-east", "default", key, b"v2")["version"]
    # straight away, before eu-west's relay has necessarily applied the event
    got = regions.get("eu-west", "default", key, params={"min_version": str(v2)})
    assert got.status_code == 200 and got.content == b"v2"
    got = regions.get("ap-south", "default", key, headers={"X-Min-Version": str(v2)})
    assert got.status_code == 200 and int(got.headers["etag"].strip('"')) >= v2
    too_new = regions.get("eu-west", "default", key, params={"min_version": str(v2 + 10**9)})
    assert too_new.status_code == 404


def test_hand_published_event_invalidates_and_old_replay_changes_nothing(
    regions: Regions, key: str
) -> None:
    v = regions.put("us-east", "default", key, b"cached")["version"]
    for region in REGIONS:
        assert regions.get(region, "default", key).status_code == 200
    newer = events.key_event("default", key, v + 100, "set", origin="orders-db")
    regions.publish("mrcache.invalidations", events.encode(newer), newer.kafka_key)
    for region in REGIONS:
        eventually(
            bind(
                region,
                lambda r: regions.held(r, "default", key).get(b"ver") == str(v + 100).encode(),
            ),
            timeout=DEADLINE,
            what=f"marker in {region}",
        )
        assert regions.get(region, "default", key).status_code == 404
    older = events.key_event("default", key, v + 50, "delete", origin="orders-db")
    regions.publish("mrcache.invalidations", events.encode(older), older.kafka_key)
    probe = events.key_event("default", key + "-probe", 5, "delete", origin="orders-db")
    regions.publish("mrcache.invalidations", events.encode(probe), probe.kafka_key)
    for region in REGIONS:
        eventually(
            bind(region, lambda r: regions.held(r, "default", key + "-probe")),
            timeout=DEADLINE,
            what="later event applied",
        )
        assert regions.held(region, "default", key)[b"ver"] == str(v + 100).encode()
        assert regions.held(region, "default", key)[b"tomb"] == b"m"
    assert regions.put("us-east", "default", key, b"again")["version"] > v + 100


def test_garbage_on_the_topic_does_not_stop_relays(regions: Regions, key: str) -> None:
    for junk in (b"not json", b"{}", b'{"v": 1, "type": "key"}', b"\xff\x00"):
        regions.publish("mrcache.invalidations", junk, b"junk")
    ev = events.key_event("default", key, 42, "delete", origin="test")
    regions.publish("mrcache.invalidations", events.encode(ev), ev.kafka_key)
    for region in REGIONS:
        eventually(
            bind(region, lambda r: regions.held(r, "default", key).get(b"ver") == b"42"),
            timeout=DEADLINE,
            what=f"valid event after garbage applied in {region}",
        )


def test_debezium_change_events_invalidate_everywhere(regions: Regions) -> None:
    row_id = uuid.uuid4().int % 10**9
    regions.put("us-east", "users", str(row_id), b"ada v3", version="3")
    for region in REGIONS:
        assert regions.get(region, "users", str(row_id)).status_code == 200
    envelope = {
        "schema": {"type": "struct", "name": "dbserver1.public.users.Envelope"},
        "payload": {
            "before": {"id": row_id, "name": "ada", "version": 3},
            "after": {"id": row_id, "name": "ada lovelace", "version": 5},
            "source": {
                "version": "2.7.0.Final",
                "connector": "postgresql",
                "name": "dbserver1",
                "ts_ms": 1700000000000,
                "snapshot": "false",
                "db": "app",
                "sequence": '["24023128","24023128"]',
                "schema": "public",
                "table": "users",
                "txId": 555,
                "lsn": 24023128,
                "xmin": None,
            },
            "op": "u",
            "ts_ms": 1700000000123,
            "transaction": None,
        },
    }
    regions.publish("dbserver1.public.users", orjson.dumps(envelope), orjson.dumps({"id": row_id}))
    for region in REGIONS:
        eventually(
            bind(region, lambda r: regions.held(r, "users", str(row_id)).get(b"ver") == b"5"),
            timeout=DEADLINE,
            what=f"debezium update applied in {region}",
        )
        assert regions.get(region, "users", str(row_id)).status_code == 404


def test_stale_set_race_never_installs_the_old_value(tmp_path: Path) -> None:
    """Slow fill of v1 in eu-west; v2 is written and its event lands; the fill must lose."""
    ns, key = "default", "raced"
    with running_platform(
        tmp_path, ("us-east", "eu-west"), env={"MRCACHE_DRILL_FILL_DELAY": "1.5"}
    ) as up:
        cluster = up.cluster()
        us = httpx.Client(base_url=cluster["regions"]["us-east"]["url"], timeout=30)
        eu = httpx.Client(base_url=cluster["regions"]["eu-west"]["url"], timeout=30)
        eu_redis = redis.Redis.from_url(cluster["regions"]["eu-west"]["redis"])
        try:
            v1 = us.put(f"/v1/ns/{ns}/keys/{key}", content=b"v1").json()["version"]

            async def race() -> tuple[httpx.Response, int]:
                async with httpx.AsyncClient(base_url=str(eu.base_url), timeout=30) as client:
                    slow = asyncio.create_task(client.get(f"/v1/ns/{ns}/keys/{key}"))
                    # the fill has fetched v1 and now waits 1.5 s before installing
                    await asyncio.sleep(0.3)
                    v2 = us.put(f"/v1/ns/{ns}/keys/{key}", content=b"v2").json()["version"]
                    return await slow, v2

            # while the slow fill waits, v2's invalidation must land in eu-west
            response, v2 = asyncio.run(race())
            assert v2 > v1
            held = eu_redis.hget(keys.entry(ns, key), "ver")
            assert held is not None and int(held) >= v2
            assert response.content != b"v1", "the raced fill served the old value"
            assert response.status_code in (200, 503)
            final = eu.get(f"/v1/ns/{ns}/keys/{key}")
            assert final.content == b"v2"
            assert final.headers["etag"] == f'"{v2}"'
        finally:
            us.close()
            eu.close()
            eu_redis.close()


def test_values_round_trip_exactly_across_regions(regions: Regions, key: str) -> None:
    blob = bytes(range(256)) * 64
    regions.http["us-east"].put(
        f"/v1/ns/default/keys/{key}", content=blob, headers={"Content-Type": "image/png"}
    )
    got = regions.get("ap-south", "default", key)
    assert got.content == blob
    assert got.headers["content-type"] == "image/png"
    assert base64.b64encode(got.content) == base64.b64encode(blob)


def test_only_if_cached_never_fills(regions: Regions, key: str) -> None:
    regions.put("us-east", "default", key, b"v")
    cached_only = {"Cache-Control": "only-if-cached"}
    miss = regions.get("eu-west", "default", key, headers=cached_only)
    assert miss.status_code == 504
    assert miss.json()["error"]["code"] == "not_cached"
    assert regions.get("eu-west", "default", key, headers=cached_only).status_code == 504
    assert regions.get("eu-west", "default", key).headers["x-cache"] == "MISS"  # fills
    hit = regions.get("eu-west", "default", key, headers=cached_only)
    assert hit.status_code == 200 and hit.headers["x-cache"] == "HIT"


# -- only the home region assigns versions and stamps (regressions) -----------------


def applied_in(regions: Regions, region: str, ns: str, key: str) -> int:
    raw = regions.redis[region].hget(keys.index(ns, keys.leaf_of(key)), key)
    return int(raw) if raw else 0


def test_a_miss_outside_the_home_is_filled_by_the_home_which_assigns_the_version(
    regions: Regions, origin: OriginServer, key: str
) -> None:
    """eu-west used to ask the origin itself and install the row under a version of its
    own clock: above the home's, so the home's next write was refused there."""
    origin.control(no_version=True)
    try:
        first = regions.get("eu-west", "cat", key)
        assert first.status_code == 200 and first.headers["x-cache"] == "MISS"
        version = first.headers["etag"]
        assert origin.stats()["requests"][key] == 1
        for region in ("us-east", "ap-south"):
            assert regions.get(region, "cat", key).headers["etag"] == version
        assert origin.stats()["requests"][key] == 1  # the home's copy, not the origin again
        written = regions.put("eu-west", "cat", key, b"written")["version"]
        assert f'"{written}"' != version
        for region in REGIONS:
            eventually(
                bind(region, lambda r: regions.get(r, "cat", key).content == b"written"),
                timeout=DEADLINE,
                what=f"the write served in {region}",
            )
    finally:
        origin.reset()


def test_min_version_after_a_delete_never_gets_an_origin_row(
    regions: Regions, origin: OriginServer, key: str
) -> None:
    """eu-west holds an older copy and has not seen the delete: it asks the home, which
    answers "deleted". It used to ask the origin next and serve its row under a version
    of its own clock, newer than the delete."""
    origin.control(no_version=True)
    try:
        assert regions.get("eu-west", "cat", key).status_code == 200  # the origin has a row
        with dropping(regions, "eu-west"):
            deleted = regions.http["ap-south"].delete(f"/v1/ns/cat/keys/{key}")
            assert deleted.status_code == 204
            version = int(deleted.headers["etag"].strip('"'))
            got = regions.get("eu-west", "cat", key, params={"min_version": str(version)})
            assert got.status_code == 404, got.headers.get("etag")
    finally:
        origin.reset()


def _away_from_namespace_home(ns: str, prefix: str) -> str:
    """A key of a hash namespace whose home is not the namespace's own home."""
    cfg = NamespaceConfig(home_region="hash")
    ns_home = home_region(cfg, REGIONS, ns, None)
    return next(
        k
        for k in (f"{prefix}-{i}" for i in range(100))
        if home_region(cfg, REGIONS, ns, k) != ns_home
    )


@pytest.mark.parametrize("what", ["namespace", "tag"])
def test_with_hash_homes_a_write_after_an_invalidation_survives_it(
    regions: Regions, what: str
) -> None:
    """The key's home stamped the write with its own copy of the namespace's metadata,
    which did not have the invalidation yet: the write was voided when its event came
    (8 of 8 tries)."""
    ns = "hashed"
    key = _away_from_namespace_home(ns, uuid.uuid4().hex[:6])
    key_home = home_region(NamespaceConfig(home_region="hash"), REGIONS, ns, key)
    path = f"/v1/ns/{ns}/invalidate" if what == "namespace" else f"/v1/ns/{ns}/tags/t/invalidate"
    field = "gen" if what == "namespace" else "t:t"
    # the invalidation reaches the key's home late (here: by the reconciler, not its relay)
    with dropping(regions, key_home):
        bumped = regions.http["ap-south"].post(path).json()
        stamp = bumped["generation"] if what == "namespace" else bumped["version"]
        v = regions.put("ap-south", ns, key, b"after", tags="t")["version"]

    def applied_at_key_home() -> bool:
        held = regions.redis[key_home].hget(keys.namespace_meta(ns), field)
        return held is not None and int(held) >= stamp

    eventually(applied_at_key_home, timeout=DEADLINE, what="the invalidation at the key's home")
    for region in REGIONS:
        got = regions.get(region, ns, key, params={"min_version": str(v)})
        assert got.status_code == 200, (region, got.text)
        assert got.content == b"after"


def test_writes_after_the_home_lost_its_metadata_are_not_voided(regions: Regions) -> None:
    """us-east lost the namespace's metadata (an empty restart, an older snapshot): it
    stamped new writes with generation 0 while the other regions held the newer one, so
    eu-west answered 404 even to min_version, and the reconciler then voided the write at
    home too."""
    ns = f"l{uuid.uuid4().hex[:8]}"
    generation = regions.http["us-east"].post(f"/v1/ns/{ns}/invalidate").json()["generation"]

    def eu_has_it() -> bool:
        held = regions.redis["eu-west"].hget(keys.namespace_meta(ns), "gen")
        return held is not None and int(held) >= generation

    eventually(eu_has_it, timeout=DEADLINE, what="the invalidation in eu-west")
    regions.redis["us-east"].delete(keys.namespace_meta(ns))  # the loss
    v = regions.put("us-east", ns, "k", b"after the loss")["version"]
    got = regions.get("eu-west", ns, "k", params={"min_version": str(v)})
    assert got.status_code == 200 and got.content == b"after the loss"
    # the reconciler brings us-east's generation back up: the write stays
    reconciler = regions.services["reconciler:local"]
    assert httpx.post(f"{reconciler}/v1/reconcile", timeout=60).status_code == 200
    held = regions.redis["us-east"].hget(keys.namespace_meta(ns), "gen")
    assert held is not None and int(held) >= generation
    for region in REGIONS:
        assert regions.get(region, ns, "k").content == b"after the loss"


def test_a_namespace_of_a_system_of_record_takes_versions_from_it(
    regions: Regions, origin: OriginServer, key: str
) -> None:
    """A write without a version got the home's microsecond clock (about 1.8e15) and
    outranked every later change event of the record (row versions, LSNs)."""
    for ns in ("rows", "users"):
        unversioned = regions.http["eu-west"].put(f"/v1/ns/{ns}/keys/{key}", content=b"x")
        assert unversioned.status_code == 400
        assert unversioned.json()["error"]["code"] == "version_required"
        delete = regions.http["us-east"].delete(f"/v1/ns/{ns}/keys/{key}")
        assert delete.status_code == 400
    assert regions.put("us-east", "rows", key, b"row 5", version="5")["version"] == 5
    stale = regions.http["us-east"].delete(f"/v1/ns/rows/keys/{key}", params={"version": "5"})
    assert stale.status_code == 409
    # an origin answer without a version is cached at the version known here, never above
    other = f"{key}-o"
    origin.control(no_version=True)
    try:
        first = regions.get("ap-south", "rows", other)
        assert first.status_code == 200 and "etag" not in first.headers
        events_key = f"{other}".encode()
        regions.publish(
            "mrcache.invalidations",
            events.encode(events.key_event("rows", other, 7, "set", origin="db")),
            b"rows/" + events_key,
        )
        for region in REGIONS:
            eventually(
                bind(region, lambda r: applied_in(regions, r, "rows", other) == 7),
                timeout=DEADLINE,
                what=f"the record's change applied in {region}",
            )
            got = regions.get(region, "rows", other)
            assert got.status_code == 200 and got.headers["etag"] == '"7"'
    finally:
        origin.reset()


def test_read_your_writes_of_a_record_change_the_home_has_not_applied_yet(
    regions: Regions, origin: OriginServer, key: str
) -> None:
    """The record published version 9 (and its origin serves it); the home's relay has
    not applied it yet. A read asking for 9 gets it from the origin through the home,
    not a 404 (the home's own copy is older)."""
    origin.control(versions={key: 8})
    try:
        assert regions.get("eu-west", "rows", key).headers["etag"] == '"8"'
        with dropping(regions, "us-east"):
            origin.control(versions={key: 9})
            regions.publish(
                "mrcache.invalidations",
                events.encode(events.key_event("rows", key, 9, "set", origin="db")),
                f"rows/{key}".encode(),
            )
            got = regions.get("ap-south", "rows", key, params={"min_version": "9"})
            assert got.status_code == 200, got.text
            assert got.headers["etag"] == '"9"'
    finally:
        origin.reset()


@pytest.mark.parametrize("dots", [".", "..", "..."])
def test_keys_of_dots_alone_are_filled_from_the_home_everywhere(
    regions: Regions, dots: str
) -> None:
    """A key of dots travels as %2E..., never as a relative-path step: the home's fill
    route must not turn into a redirect (it did: 503 home_unavailable, "answered 307")."""
    path = dots.replace(".", "%2E")
    put = regions.http["us-east"].put(f"/v1/ns/default/keys/{path}", content=dots.encode())
    assert put.status_code == 200, put.text
    for region in ("eu-west", "ap-south"):
        got = regions.http[region].get(f"/v1/ns/default/keys/{path}")
        assert got.status_code == 200, got.text
        assert got.content == dots.encode()
        batch = regions.http[region].post(
            "/v1/ns/default/keys:batchGet", json={"keys": [dots, "absent-" + dots]}
        )
        assert batch.status_code == 200, batch.text
