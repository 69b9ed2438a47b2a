"""Applying events is order-insensitive and idempotent (events.md), against a real Redis.

A home region produces one key's events, its namespace bumps and its tags'
bumps with strictly increasing versions. Applying that stream once in order,
or any permutation of it with duplicates and replays (what partitions and
at-least-once delivery produce), must end in the same observable state, and
that state is the one the model below predicts from the stream alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs.common import keys
from libs.common.apply import apply_event, apply_events
from libs.common.events import Event, decode, encode, key_event, namespace_event, tag_event
from libs.common.store import Lookup, RegionStore
from tests.support.redis_cluster import RedisBackend

KEY = "item/1"
TAGS = ("red", "blue")
ORIGIN = "us-east"
REPLICA_TTL = 600.0


@pytest.fixture
async def store(redis_backend: RedisBackend) -> AsyncIterator[RegionStore]:
    client = redis_backend.async_client()
    yield RegionStore(client, tombstone_ttl=600)
    await client.aclose()


def fresh_ns() -> str:
    return f"p-{uuid.uuid4().hex[:16]}"


# -- the home region: actions drawn by hypothesis become events ----------------

# ("set",) | ("setv", value, tags) | ("del",) | ("ns",) | ("tag", tag); each with a version step
_action = st.one_of(
    st.tuples(st.just("set")),
    st.tuples(
        st.just("setv"),
        # empty values: see test_empty_replicated_value_is_applied (a codec bug)
        st.binary(min_size=1, max_size=8),
        st.lists(st.sampled_from(TAGS), unique=True, max_size=2).map(tuple),
    ),
    st.tuples(st.just("del")),
    st.tuples(st.just("ns")),
    st.tuples(st.just("tag"), st.sampled_from(TAGS)),
)
_actions = st.lists(st.tuples(_action, st.integers(1, 3)), min_size=1, max_size=12)


@dataclass(frozen=True)
class Stream:
    """Events in generation order, re-targeted to a fresh namespace per application."""

    events: tuple[Event, ...]

    def for_ns(self, ns: str) -> list[Event]:
        return [_retarget(e, ns) for e in self.events]


def _retarget(event: Event, ns: str) -> Event:
    """The same event (id, version, stamps, timestamp) in another namespace, through the codec."""
    return decode(encode(dataclasses.replace(event, ns=ns)))


def home_stream(actions: Sequence[tuple[tuple[object, ...], int]]) -> Stream:
    """What a home region publishes: one clock, so versions increase in generation order;
    a replicated value carries the generation and tag versions it was written under."""
    clock = 0
    gen = 0
    tag_versions = dict.fromkeys(TAGS, 0)
    out: list[Event] = []
    for action, step in actions:
        clock += step
        kind = action[0]
        if kind == "set":
            out.append(key_event("home", KEY, clock, "set", origin=ORIGIN))
        elif kind == "setv":
            value, tags = action[1], action[2]
            assert isinstance(value, bytes) and isinstance(tags, tuple)
            out.append(
                key_event(
                    "home",
                    KEY,
                    clock,
                    "set",
                    origin=ORIGIN,
                    value=value,
                    content_type="text/plain",
                    ttl=REPLICA_TTL,
                    gen=gen,
                    tags=tags,
                    tag_versions=tuple(tag_versions[t] for t in tags),
                )
            )
        elif kind == "del":
            out.append(key_event("home", KEY, clock, "delete", origin=ORIGIN))
        elif kind == "ns":
            gen = clock
            out.append(namespace_event("home", gen, origin=ORIGIN))
        else:
            tag = action[1]
            assert isinstance(tag, str)
            tag_versions[tag] = clock
            out.append(tag_event("home", tag, clock, origin=ORIGIN))
    return Stream(tuple(out))


# -- what a region shows ---------------------------------------------------------


@dataclass(frozen=True)
class Observed:
    lookup: Lookup
    held_version: int
    value: bytes | None  # only when HIT
    generation: int
    tag_versions: tuple[int, ...]


async def observe(store: RegionStore, ns: str) -> Observed:
    result = await store.read(ns, KEY)
    gen, tag_versions = await store.stamps(ns, TAGS, clock=False)
    value = result.entry.value if result.lookup is Lookup.HIT and result.entry else None
    return Observed(result.lookup, result.held_version, value, gen, tag_versions)


async def raw_entry(store: RegionStore, ns: str) -> dict[bytes, bytes]:
    """The entry hash without a tombstone's apply time (the only field that may differ)."""
    raw = await store.redis.hgetall(keys.entry(ns, KEY))
    fields = {bytes(k): bytes(v) for k, v in raw.items()}  # type: ignore[arg-type]
    if b"tomb" in fields:
        fields.pop(b"ts", None)
    return fields


async def applied_index(store: RegionStore, ns: str) -> tuple[int, dict[bytes, bytes]]:
    """The key's applied version in the never-evicted index, and its bucket's digests."""
    leaf = hashlib.sha1(KEY.encode(), usedforsecurity=False).hexdigest()[:4]
    version = await store.redis.hget(keys.index(ns, leaf), KEY)
    digests = await store.redis.hgetall(keys.digest(ns, leaf[: keys.BUCKET_DIGITS]))
    return int(version or 0), {bytes(k): bytes(v) for k, v in digests.items()}  # type: ignore[arg-type]


def predicted(events: Sequence[Event]) -> Observed:
    """The state the last key event and the latest stamps imply, from the stream alone."""
    gen = max((e.version for e in events if e.type == "namespace"), default=0)
    tag_versions = {t: 0 for t in TAGS}
    for e in events:
        if e.type == "tag":
            assert e.tag is not None
            tag_versions[e.tag] = max(tag_versions[e.tag], e.version)
    current = (gen, tuple(tag_versions[t] for t in TAGS))
    key_events = [e for e in events if e.type == "key"]
    if not key_events:
        return Observed(Lookup.ABSENT, 0, None, *current)
    last = max(key_events, key=lambda e: e.version)
    if last.op == "delete":
        return Observed(Lookup.TOMBSTONE, last.version, None, *current)
    value = last.value()
    if value is None:
        return Observed(Lookup.SUPERSEDED, last.version, None, *current)
    assert last.gen is not None and last.tags is not None and last.tag_versions is not None
    voided = last.gen < gen or any(
        tag_versions[t] > v for t, v in zip(last.tags, last.tag_versions, strict=True)
    )
    if voided:
        return Observed(Lookup.INVALIDATED, last.version, None, *current)
    return Observed(Lookup.HIT, last.version, value, *current)


async def apply_all(store: RegionStore, events: Sequence[Event]) -> None:
    for event in events:
        await apply_event(store, event)


async def apply_batched(store: RegionStore, events: Sequence[Event], sizes: Sequence[int]) -> None:
    """Apply in batches of the given sizes (the rest in one), as a relay does per fetch:
    one pipeline of scripts each, in order."""
    start = 0
    for size in [*sizes, len(events)]:
        chunk = events[start : start + size]
        start += size
        if chunk:
            results = await apply_events(store, chunk)
            assert not [r for r in results if not isinstance(r, bool)]


# -- the property ----------------------------------------------------------------


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(actions=_actions, data=st.data())
async def test_any_interleaving_with_duplicates_ends_in_the_in_order_state(
    store: RegionStore, actions: list[tuple[tuple[object, ...], int]], data: st.DataObject
) -> None:
    stream = home_stream(actions)
    ns_a, ns_b = fresh_ns(), fresh_ns()
    in_order = stream.for_ns(ns_a)
    await apply_all(store, in_order)

    events = stream.for_ns(ns_b)
    shuffled: list[Event] = list(data.draw(st.permutations(events), label="permutation"))
    extra = data.draw(
        st.lists(st.tuples(st.integers(0, len(events) - 1), st.integers(0, 10**6)), max_size=8),
        label="duplicates (event, position)",
    )
    for index, position in extra:
        shuffled.insert(position % (len(shuffled) + 1), events[index])
    if data.draw(st.booleans(), label="replay the whole stream at the end"):
        shuffled.extend(events)
    # a relay applies each fetched batch in one round trip: any split is the same
    sizes = data.draw(st.lists(st.integers(1, 8), max_size=6), label="batch sizes")
    await apply_batched(store, shuffled, sizes)

    a, b = await observe(store, ns_a), await observe(store, ns_b)
    assert a == predicted(in_order)
    assert b == a
    assert await raw_entry(store, ns_b) == await raw_entry(store, ns_a)
    # what the reconciler compares: the applied version and its digest
    index_a, index_b = await applied_index(store, ns_a), await applied_index(store, ns_b)
    assert index_a[0] == a.held_version
    assert index_b == index_a


# -- explicit examples -------------------------------------------------------------


async def test_older_replay_after_delete_changes_nothing(store: RegionStore) -> None:
    ns = fresh_ns()
    stream = [
        key_event(ns, KEY, 10, "set", origin=ORIGIN, value=b"v10", gen=0),
        key_event(ns, KEY, 11, "set", origin=ORIGIN),
        key_event(ns, KEY, 12, "delete", origin=ORIGIN),
    ]
    await apply_all(store, stream)
    before = await store.redis.hgetall(keys.entry(ns, KEY))
    for event in reversed(stream):  # the whole stream replayed, newest first
        assert await apply_event(store, event) is False
    assert await store.redis.hgetall(keys.entry(ns, KEY)) == before  # not even its time
    result = await store.read(ns, KEY)
    assert (result.lookup, result.held_version) == (Lookup.TOMBSTONE, 12)


async def test_replicated_value_older_than_a_superseded_marker_is_not_installed(
    store: RegionStore,
) -> None:
    ns = fresh_ns()
    assert await apply_event(store, key_event(ns, KEY, 20, "set", origin=ORIGIN))
    late = key_event(ns, KEY, 19, "set", origin=ORIGIN, value=b"old", gen=0)
    assert await apply_event(store, late) is False
    result = await store.read(ns, KEY)
    assert (result.lookup, result.held_version, result.entry) == (Lookup.SUPERSEDED, 20, None)
    # the same version as the marker is the copy the marker stood for: it installs
    same = key_event(ns, KEY, 20, "set", origin=ORIGIN, value=b"v20", gen=0)
    assert await apply_event(store, same)
    result = await store.read(ns, KEY)
    assert result.lookup is Lookup.HIT and result.entry and result.entry.value == b"v20"


async def test_namespace_event_overtaking_the_set_still_voids_the_older_copy(
    store: RegionStore,
) -> None:
    """Different partitions: the namespace bump (gen 7) arrives before the value written
    under gen 5; installing it must not make it valid under gen 7."""
    ns = fresh_ns()
    value_event = key_event(
        ns, KEY, 6, "set", origin=ORIGIN, value=b"v6", gen=5, tags=("red",), tag_versions=(0,)
    )
    assert await apply_event(store, namespace_event(ns, 7, origin=ORIGIN))
    assert await apply_event(store, value_event)  # held, so an older fill cannot install
    result = await store.read(ns, KEY)
    assert (result.lookup, result.held_version) == (Lookup.INVALIDATED, 6)

    # the same with a tag bump overtaking the value
    other = fresh_ns()
    tagged = key_event(
        other, KEY, 6, "set", origin=ORIGIN, value=b"v6", gen=0, tags=("red",), tag_versions=(4,)
    )
    assert await apply_event(store, tag_event(other, "red", 8, origin=ORIGIN))
    assert await apply_event(store, tagged)
    result = await store.read(other, KEY)
    assert (result.lookup, result.held_version) == (Lookup.INVALIDATED, 6)


async def test_unstamped_value_overtaken_by_a_namespace_bump_is_not_served(
    store: RegionStore,
) -> None:
    """A system of record publishes v5 with a value (no gen/tags), then the namespace is
    invalidated (gen 9). In order, v5 ends INVALIDATED; the bump arriving first must not
    turn v5 into a valid copy."""
    in_order, overtaken = fresh_ns(), fresh_ns()
    for ns, order in ((in_order, (0, 1)), (overtaken, (1, 0))):
        stream = [
            key_event(ns, KEY, 5, "set", origin="orders-db", value=b"v5"),
            namespace_event(ns, 9, origin=ORIGIN),
        ]
        for i in order:
            await apply_event(store, stream[i])
    assert (await store.read(in_order, KEY)).lookup is Lookup.INVALIDATED
    assert (await store.read(overtaken, KEY)).lookup is Lookup.INVALIDATED


async def test_empty_replicated_value_is_applied(store: RegionStore) -> None:
    ns = fresh_ns()
    await apply_event(store, key_event(ns, KEY, 3, "set", origin=ORIGIN, value=b"old", gen=0))
    empty = key_event(ns, KEY, 4, "set", origin=ORIGIN, value=b"", gen=0)
    assert await apply_event(store, decode(encode(empty)))  # what a relay does with it
    result = await store.read(ns, KEY)
    assert result.lookup is Lookup.HIT and result.entry and result.entry.value == b""
