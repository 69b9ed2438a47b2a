"""The numbers at the edges (architecture.md, "Known traps"): versions at 2^53 - 1,
stamps after the metadata was lost, a script's arguments out of range, a script
refused by a Redis at maxmemory. Each broke on main before the fix."""

from __future__ import annotations

import httpx
import pytest
from redis.exceptions import ResponseError

from libs.common import keys
from libs.common.errors import InvalidRequest, StoreOutOfMemory, VersionExhausted
from libs.common.store import Entry, Lookup, RegionStore
from libs.common.versions import MAX_VERSION
from tests.support.platform import RedisServer


def test_a_write_past_the_largest_version_is_refused_and_no_version_repeats(
    client: httpx.Client, ns: str
) -> None:
    path = f"/v1/ns/{ns}/keys/edge"
    assert client.put(path, content=b"a", params={"version": str(MAX_VERSION)}).status_code == 200
    for attempt in (
        client.put(path, content=b"b"),
        client.delete(path),
        client.put(path, content=b"c", params={"version": str(MAX_VERSION)}),
    ):
        assert attempt.status_code == 409, attempt.text
        assert attempt.json()["error"]["code"] in ("version_exhausted", "stale_version")
        assert attempt.json()["error"]["current_version"] == MAX_VERSION
    assert client.put(path, content=b"b").json()["error"]["code"] == "version_exhausted"
    got = client.get(path)
    assert got.status_code == 200 and got.content == b"a"
    assert got.headers["etag"] == f'"{MAX_VERSION}"'
    # one past the maximum is not a version at all
    beyond = client.put(path, content=b"d", params={"version": str(MAX_VERSION + 1)})
    assert beyond.status_code == 400 and beyond.json()["error"]["code"] == "invalid_version"


async def test_generations_and_tag_versions_stop_at_the_largest_version(
    store: RegionStore, ns: str
) -> None:
    assert (await store.bump_namespace(ns, MAX_VERSION))[0]
    with pytest.raises(VersionExhausted):
        await store.bump_namespace(ns)
    assert (await store.bump_tag(ns, "t", MAX_VERSION))[0]
    with pytest.raises(VersionExhausted):
        await store.bump_tag(ns, "t")
    # an event of the same version changes nothing and is not an error
    assert await store.bump_namespace(ns, MAX_VERSION) == (False, MAX_VERSION)


async def test_stamps_never_go_back_when_the_metadata_is_lost(store: RegionStore, ns: str) -> None:
    """An entry written after an acknowledged invalidation survives it, also when the
    region lost its metadata in between (an empty restart, an older snapshot): its stamps
    are at least the clock, newer than any generation the region assigned before."""
    _, generation = await store.bump_namespace(ns)
    await store.redis.delete(keys.namespace_meta(ns))  # the loss
    written = await store.write(ns, "k", b"after", content_type="text/plain", ttl=60)
    assert written.generation > generation
    # the reconciler (or the relay, replaying) raises the generation back: the entry stays
    await store.bump_namespace(ns, generation)
    assert (await store.read(ns, "k")).lookup is Lookup.HIT
    # and an invalidation after the write still voids it
    await store.bump_namespace(ns)
    assert (await store.read(ns, "k")).lookup is Lookup.INVALIDATED
    # stored values alone (what a tombstone is stamped with) have no clock floor
    assert (await store.stamps(ns, (), clock=False))[0] < written.generation + 10**7


async def test_a_script_checks_its_numbers_before_its_first_write(
    store: RegionStore, ns: str
) -> None:
    """An expiry a PEXPIREAT refuses used to leave the hash written without a TTL: a
    never-evictable entry. Now nothing is written at all."""
    huge = Entry(b"v", "text/plain", 5, 0, 2**60, ())
    with pytest.raises(InvalidRequest):
        await store.fill(ns, "k", huge)
    assert await store.redis.exists(keys.entry(ns, "k")) == 0
    reply = await store.scripts.fill(
        keys=keys.entry_script_keys(ns, "k")[0],
        args=[b"v", "text/plain", 5, 0, "1e300", 0, 0, "", "", "k", keys.leaf_of("k")],
    )
    assert reply[-1] == b"invalid"
    assert await store.redis.exists(keys.entry(ns, "k")) == 0


async def test_at_maxmemory_invalidations_still_apply_and_writes_are_refused_whole(
    redis_server: RedisServer, ns: str
) -> None:
    """With nothing left to evict, a write is refused before it changes anything (never
    half-applied), while tombstones and generation bumps still go through: an
    invalidation never fails for lack of memory. (One server shows the rule: a cluster
    applies it per node.)"""
    redis = redis_server.async_client()
    store = RegionStore(redis, tombstone_ttl=60)
    written = await store.write(ns, "k", b"v", content_type="text/plain", ttl=60)
    policy = await redis.config_get("maxmemory-policy")
    try:
        await redis.config_set("maxmemory-policy", "noeviction")
        await redis.config_set("maxmemory", 1)  # below what is used: nothing fits
        with pytest.raises(StoreOutOfMemory):
            await store.write(ns, "k", b"w", content_type="text/plain", ttl=60)
        assert (await store.read(ns, "k")).entry is not None
        with pytest.raises(ResponseError):
            await redis.set("plain", "x")  # the ordinary rule, for comparison
        applied, held = await store.tombstone(ns, "k", written.version + 1)
        assert applied and held == written.version + 1
        assert (await store.bump_namespace(ns))[0]
        assert (await store.bump_tag(ns, "t"))[0]
    finally:
        await redis.config_set("maxmemory", 0)
        await redis.config_set("maxmemory-policy", str(policy["maxmemory-policy"]))
    assert (await store.read(ns, "k")).lookup is Lookup.TOMBSTONE
    await redis.aclose()
