"""The versioned Lua scripts against a real redis-server."""

from __future__ import annotations

import pytest

from libs.common import keys
from libs.common.errors import PreconditionFailed, StaleVersion
from libs.common.store import Entry, Lookup, RegionStore


async def test_tombstone_blocks_older_writes_and_events(store: RegionStore, ns: str) -> None:
    w = await store.write(ns, "k", b"v1", content_type="text/plain", ttl=60)
    applied, tomb = await store.tombstone(ns, "k")
    assert applied and tomb > w.version
    # an event older than the tombstone changes nothing
    assert await store.tombstone(ns, "k", version=w.version) == (False, tomb)
    with pytest.raises(StaleVersion):
        await store.write(ns, "k", b"old", content_type="x", ttl=60, external_version=w.version)
    result = await store.read(ns, "k")
    assert result.lookup is Lookup.TOMBSTONE and result.held_version == tomb
    # a newer external version applies over the tombstone
    newer = await store.write(ns, "k", b"v9", content_type="x", ttl=60, external_version=tomb + 1)
    assert newer.version == tomb + 1
    assert (await store.read(ns, "k")).lookup is Lookup.HIT


async def test_event_tombstone_for_unknown_key_is_kept(store: RegionStore, ns: str) -> None:
    assert await store.tombstone(ns, "ghost", version=500) == (True, 500)
    with pytest.raises(StaleVersion):
        await store.write(ns, "ghost", b"late fill", content_type="x", ttl=5, external_version=400)
    assert (await store.read(ns, "ghost")).lookup is Lookup.TOMBSTONE


async def test_compare_and_set_on_raw_version(store: RegionStore, ns: str) -> None:
    w = await store.write(ns, "c", b"1", content_type="x", ttl=60)
    with pytest.raises(PreconditionFailed):
        await store.write(ns, "c", b"2", content_type="x", ttl=60, expect_version=w.version - 1)
    ok = await store.write(ns, "c", b"2", content_type="x", ttl=60, expect_version=w.version)
    assert ok.version > w.version
    await store.write(ns, "fresh", b"1", content_type="x", ttl=60, expect_version=0)
    with pytest.raises(PreconditionFailed):
        await store.write(ns, "fresh", b"1", content_type="x", ttl=60, expect_version=0)


async def test_bumps_are_monotonic_and_idempotent(store: RegionStore, ns: str) -> None:
    applied, gen = await store.bump_namespace(ns)
    assert applied
    assert await store.bump_namespace(ns, version=gen) == (False, gen)
    assert await store.bump_namespace(ns, version=gen - 5) == (False, gen)
    assert await store.bump_namespace(ns, version=gen + 10) == (True, gen + 10)
    _, tag = await store.bump_tag(ns, "red")
    assert await store.bump_tag(ns, "red", version=tag) == (False, tag)


async def test_entries_are_valid_until_their_namespace_is_invalidated(
    store: RegionStore, ns: str
) -> None:
    await store.write(ns, "k", b"v", content_type="x", ttl=60)
    assert await store.redis.exists(keys.namespace_meta(ns)) == 0  # nothing invalidated yet
    assert (await store.read(ns, "k")).lookup is Lookup.HIT
    await store.bump_namespace(ns)
    assert (await store.read(ns, "k")).lookup is Lookup.INVALIDATED


async def test_every_key_a_script_of_an_entry_touches_shares_one_hash_slot(ns: str) -> None:
    from redis.crc import key_slot

    slots = set()
    for key in ["plain", "with}brace", "{x}", "}{", "a/b", "日本", "x" * 512]:
        script_keys, leaf = keys.entry_script_keys(ns, key)
        assert script_keys[0] == keys.entry(ns, key) and script_keys[2] == keys.lease(ns, key)
        assert script_keys[3] == keys.index(ns, leaf) and leaf == keys.leaf_of(key)
        assert len({key_slot(k) for k in script_keys}) == 1, key
        slots.add(key_slot(script_keys[0]))
    # and one namespace's entries spread over the slots (buckets of 3 hex digits)
    assert len(slots) > 1
    spread = {key_slot(keys.entry(ns, f"k{i}")) for i in range(2000)}
    assert len(spread) > 1000


async def test_read_many_mixes_results(store: RegionStore, ns: str) -> None:
    await store.write(ns, "a", b"A", content_type="x", ttl=60)
    await store.write(ns, "t", b"T", content_type="x", ttl=60, tags=("red",))
    await store.tombstone(ns, "d")
    await store.bump_tag(ns, "red")
    got = await store.read_many(ns, ["a", "t", "d", "none"])
    assert [r.lookup for r in got] == [
        Lookup.HIT,
        Lookup.INVALIDATED,
        Lookup.TOMBSTONE,
        Lookup.ABSENT,
    ]


async def test_applied_index_and_digest_follow_every_change(store: RegionStore, ns: str) -> None:
    from libs.common.digest import leaf_digest

    w = await store.write(ns, "k", b"v1", content_type="x", ttl=60)
    _, tomb = await store.tombstone(ns, "k")
    await store.tombstone(ns, "other", version=77, superseded=True)
    expected = {"k": tomb, "other": 77}
    for key, version in expected.items():
        leaf = keys.leaf_of(key)
        index = await store.redis.hgetall(keys.index(ns, leaf))
        assert index[key.encode()] == str(version).encode()
        same_leaf = {k: v for k, v in expected.items() if keys.leaf_of(k) == leaf}
        digest = await store.redis.hget(keys.digest(ns, leaf[: keys.BUCKET_DIGITS]), leaf)
        assert digest is not None and int(digest) == leaf_digest(same_leaf)
    assert tomb > w.version


async def test_eviction_does_not_change_the_digest_nor_let_old_fills_in(
    store: RegionStore, ns: str
) -> None:
    w = await store.write(ns, "k", b"v1", content_type="x", ttl=60)
    _, tomb = await store.tombstone(ns, "k")
    bucket = keys.digest(ns, keys.leaf_of("k")[: keys.BUCKET_DIGITS])
    before = await store.redis.hgetall(bucket)
    await store.redis.delete(keys.entry(ns, "k"))  # as eviction would
    assert await store.redis.hgetall(bucket) == before
    old = (await store.read(ns, "k")).lookup
    assert old is Lookup.ABSENT
    stale = Entry(
        value=b"v1",
        content_type="x",
        version=w.version,
        written_ms=w.written_ms,
        expires_ms=w.expires_ms,
        tags=(),
    )
    assert await store.fill(ns, "k", stale) == (False, tomb)
    newer = Entry(
        value=b"v9",
        content_type="x",
        version=tomb + 1,
        written_ms=w.written_ms,
        expires_ms=w.expires_ms + 60_000,
        tags=(),
    )
    assert await store.fill(ns, "k", newer) == (True, tomb + 1)


async def test_a_fill_of_the_applied_version_installs_where_no_copy_is_held(
    store: RegionStore, ns: str
) -> None:
    await store.tombstone(ns, "m", version=500, superseded=True)
    await store.redis.delete(keys.entry(ns, "m"))  # the marker was evicted
    entry = Entry(
        value=b"v", content_type="x", version=500, written_ms=1, expires_ms=2**41, tags=()
    )
    assert await store.fill(ns, "m", entry) == (True, 500)
    assert (await store.read(ns, "m")).lookup is Lookup.HIT
    assert await store.fill(ns, "m", entry) == (False, 500)  # the copy is held now
