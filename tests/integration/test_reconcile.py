"""The reconciler's pass on real Redis: two regions as two databases of the test server,
or (backend ``cluster``) the test Redis Cluster as us-east and a database as eu-west."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from redis.asyncio import Redis

from libs.common import keys
from libs.common.config import PlatformConfig
from libs.common.redisclient import RedisClient
from libs.common.store import Entry, Lookup, RegionStore
from services.reconciler import reconcile
from services.reconciler.app import region_stores
from services.reconciler.reconcile import Reconciler
from services.reconciler.settings import ReconcilerSettings
from tests.support.platform import RedisServer
from tests.support.redis_cluster import RedisBackend


@pytest.fixture
async def two(
    redis_backend: RedisBackend, redis_server: RedisServer
) -> AsyncIterator[dict[str, RegionStore]]:
    base = redis_server.url.rsplit("/", 1)[0]
    clients: dict[str, RedisClient] = {
        "us-east": redis_backend.async_client()
        if redis_backend.cluster
        else Redis.from_url(f"{base}/3"),
        "eu-west": Redis.from_url(f"{base}/4"),
    }
    for client in clients.values():
        # a pass sees only this test; the other tests of the shared cluster each keep
        # to their own namespace, so emptying it between tests changes nothing for them
        await client.flushdb()
    yield {name: RegionStore(c, tombstone_ttl=60) for name, c in clients.items()}
    for c in clients.values():
        await c.aclose()


@pytest.fixture
def ns() -> str:
    return f"r-{uuid.uuid4().hex[:10]}"


def reconciler(
    stores: dict[str, RegionStore], *, full_scan_every: int = 10, **ns_cfg: Any
) -> Reconciler:
    cfg = PlatformConfig.model_validate(
        {
            "platform": {"regions": ["us-east", "eu-west"]},
            "namespaces": {"default": ns_cfg} if ns_cfg else {},
        }
    )
    return Reconciler(cfg, stores, pause=0, full_scan_every=full_scan_every)


def entry(version: int, value: bytes = b"v") -> Entry:
    return Entry(
        value=value, content_type="x", version=version, written_ms=1, expires_ms=2**42, tags=()
    )


async def test_identical_regions_need_no_key_comparison(
    two: dict[str, RegionStore], ns: str
) -> None:
    for i in range(50):
        w = await two["us-east"].write(ns, f"k{i}", b"v", content_type="x", ttl=60)
        await two["eu-west"].tombstone(ns, f"k{i}", w.version, superseded=True)
    await two["eu-west"].redis.delete(keys.entry(ns, "k3"))  # eviction is not divergence
    report = await reconciler(two).run_once()
    assert report.leaves_compared == 0 and report.keys_compared == 0
    assert sum(report.repairs.values()) == 0


async def test_missed_events_are_repaired(two: dict[str, RegionStore], ns: str) -> None:
    us, eu = two["us-east"], two["eu-west"]
    v1 = (await us.write(ns, "upd", b"v1", content_type="x", ttl=60)).version
    await eu.fill(ns, "upd", entry(v1, b"v1"))
    v2 = (await us.write(ns, "upd", b"v2", content_type="x", ttl=60)).version  # event lost
    await us.write(ns, "gone", b"x", content_type="x", ttl=60)
    await eu.fill(ns, "gone", (await us.read(ns, "gone")).entry)  # type: ignore[arg-type]
    await us.tombstone(ns, "gone")  # event lost
    await us.write(ns, "tagged", b"t", content_type="x", ttl=60, tags=("red",))
    await eu.fill(ns, "tagged", (await us.read(ns, "tagged")).entry)  # type: ignore[arg-type]
    await us.bump_tag(ns, "red")  # event lost
    report = await reconciler(two).run_once()
    assert report.repairs["eu-west"] >= 3 and report.repairs["us-east"] == 0
    upd = await eu.read(ns, "upd")
    assert upd.lookup is Lookup.SUPERSEDED and upd.held_version == v2
    assert (await eu.read(ns, "gone")).lookup is Lookup.TOMBSTONE
    assert (await eu.read(ns, "tagged")).lookup is Lookup.INVALIDATED
    again = await reconciler(two).run_once()
    assert sum(again.repairs.values()) == 0 and again.leaves_compared == 0


async def test_passes_between_full_scans_read_the_registries_only(
    two: dict[str, RegionStore], ns: str
) -> None:
    us, eu = two["us-east"], two["eu-west"]
    rec = reconciler(two, full_scan_every=3)
    assert (await rec.run_once()).full_scan  # the first pass scans
    v1 = (await us.write(ns, "k1", b"v", content_type="x", ttl=60)).version  # registers
    report = await rec.run_once()
    assert not report.full_scan and report.repairs["eu-west"] == 1
    assert (await eu.read(ns, "k1")).held_version == v1
    # a digest its writer did not get to register (it crashed right after the script)
    v2 = (await us.write(ns, "k2", b"v", content_type="x", ttl=60)).version
    for store in (us, eu):
        await store.redis.delete(keys.buckets(ns), keys.NAMESPACES)
    report = await rec.run_once()
    assert not report.full_scan and report.repairs["eu-west"] == 0  # not seen yet
    report = await rec.run_once()
    assert report.full_scan and report.repairs["eu-west"] == 1  # the scan finds it
    assert (await eu.read(ns, "k2")).held_version == v2
    for store in (us, eu):  # and registers it again everywhere
        assert await store.redis.sismember(keys.NAMESPACES, ns)
        bucket = keys.leaf_of("k2")[: keys.BUCKET_DIGITS]
        assert await store.redis.sismember(keys.buckets(ns), bucket)


async def test_replicate_namespaces_get_the_value(two: dict[str, RegionStore], ns: str) -> None:
    w = await two["us-east"].write(ns, "k", b"value", content_type="text/plain", ttl=60)
    await reconciler(two, propagation="replicate").run_once()
    got = await two["eu-west"].read(ns, "k")
    assert got.lookup is Lookup.HIT and got.entry is not None
    assert got.entry.value == b"value" and got.entry.version == w.version


async def test_a_repair_never_removes_a_newer_copy(
    two: dict[str, RegionStore], ns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    us, eu = two["us-east"], two["eu-west"]
    v1 = (await us.write(ns, "k", b"v1", content_type="x", ttl=60)).version
    await eu.fill(ns, "k", entry(v1, b"v1"))
    v2 = (await us.write(ns, "k", b"v2", content_type="x", ttl=60)).version  # event lost
    original = reconcile._state_of

    async def write_lands_during_the_diff(*args: Any) -> Any:
        # after the diff decided eu-west lags at v1, v3 arrives there before the repair
        await eu.fill(ns, "k", entry(v2 + 10, b"v3"))
        return await original(*args)

    monkeypatch.setattr(reconcile, "_state_of", write_lands_during_the_diff)
    report = await reconciler(two).run_once()
    assert report.repairs["eu-west"] == 0
    held = await eu.read(ns, "k")
    assert held.lookup is Lookup.HIT and held.entry is not None
    assert held.entry.value == b"v3"


async def test_a_region_that_is_down_is_skipped(two: dict[str, RegionStore], ns: str) -> None:
    dead = RegionStore(
        Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2), tombstone_ttl=60
    )
    stores = {"us-east": two["us-east"], "eu-west": dead}
    report = await reconciler(stores).run_once()
    assert report.skipped_regions == ["eu-west"]
    await dead.redis.aclose()


@pytest.fixture
def snapshot_server() -> Iterator[tuple[str, dict[str, Any]]]:
    """A real HTTP endpoint serving a system of record's key -> version snapshot."""
    state: dict[str, Any] = {"body": b"{}"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body: bytes = state["body"]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/versions", state
    server.shutdown()
    server.server_close()


async def test_a_source_of_truth_snapshot_is_the_authority(
    two: dict[str, RegionStore], ns: str, snapshot_server: tuple[str, dict[str, Any]]
) -> None:
    url, state = snapshot_server
    us, eu = two["us-east"], two["eu-west"]
    await us.write(ns, "row:1", b"old", content_type="x", ttl=60, external_version=5)
    await eu.fill(ns, "row:1", entry(5, b"old"))
    await us.write(ns, "row:2", b"current", content_type="x", ttl=60, external_version=9)
    state["body"] = json.dumps({"row:1": 7, "row:2": 9}).encode()  # row 1 changed, event lost
    report = await reconciler(two, source_of_truth=url).run_once()
    # row 1 from the snapshot in both regions; row 2, missing in eu-west, from the digests
    assert report.repairs == {"us-east": 1, "eu-west": 2}
    for store in (us, eu):
        got = await store.read(ns, "row:1")
        assert got.lookup is Lookup.SUPERSEDED and got.held_version == 7
    assert (await us.read(ns, "row:2")).lookup is Lookup.HIT
    state["body"] = b'["not", "a", "snapshot"]'
    bad = await reconciler(two, source_of_truth=url).run_once()  # logged, nothing breaks
    assert sum(bad.repairs.values()) == 0


async def test_a_burst_of_missed_events_is_repaired_in_one_pass(
    redis_server: RedisServer, ns: str
) -> None:
    """1,000 keys one region missed, through the reconciler's own clients: it used to run
    out of its 8 connections (a pool that raises instead of waiting), interrupt the pass
    and repair a handful per interval."""
    base = redis_server.url.rsplit("/", 1)[0]
    settings = ReconcilerSettings(
        region_redis={"us-east": f"{base}/5", "eu-west": f"{base}/6"}, config=None
    )
    stores = region_stores(settings, ["us-east", "eu-west"])
    try:
        for store in stores.values():
            await store.redis.flushdb()
        home = stores["us-east"]
        for i in range(1000):
            await home.write(ns, f"k{i}", b"v", content_type="x", ttl=600)
        report = await reconciler(stores).run_once()
        assert report.repairs == {"us-east": 0, "eu-west": 1000}
        changes = [reconcile.Change(ns, f"k{i}", 1) for i in range(1000)]
        await stores["us-east"].bump_namespace(ns)
        for i in range(1000):
            await home.write(ns, f"k{i}", b"w", content_type="x", ttl=600)
        assert (await reconciler(stores).check_changes(changes)).repairs == {
            "us-east": 0,
            "eu-west": 1000,
        }
    finally:
        for store in stores.values():
            await store.redis.aclose()
