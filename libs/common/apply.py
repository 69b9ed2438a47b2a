"""Applying an events.md event to a region's Redis, idempotently by version.

Rules (guarantee 4 of architecture.md):

* key ``delete`` → a *deleted* tombstone at the event's version (under the
  generation the home deleted it under, when the event carries one);
* key ``set`` without a value → a *superseded* marker at the event's version
  (this region drops its older copy; a read refills from the home region);
* key ``set`` with a value (``replicate`` namespaces) → install the value when
  newer, else (also when Redis has no memory left for it) a superseded marker so
  nothing older survives;
* ``namespace`` / ``tag`` → raise the generation / tag version to the event's.

Every rule is one versioned Lua script, so an event whose version is not newer
than what the region knows changes nothing: replays, duplicates and reordering
across partitions end in the state of one in-order pass.
"""

from __future__ import annotations

from collections.abc import Sequence

from libs.common.errors import ClientError, StoreOutOfMemory
from libs.common.events import Event
from libs.common.store import Change, Entry, RegionStore

DEFAULT_REPLICA_TTL = 3600.0


async def apply_event(store: RegionStore, event: Event) -> bool:
    """Apply one event; returns whether it changed anything (raises its ClientError)."""
    (result,) = await apply_events(store, [event])
    if isinstance(result, ClientError):
        raise result
    return result


async def apply_events(store: RegionStore, batch: Sequence[Event]) -> list[bool | ClientError]:
    """Apply ``batch`` in order in one Redis round trip (one per node on a cluster), with
    the rules of :func:`apply_event`; each event gets whether it changed anything, or the
    :class:`ClientError` its numbers earned (nothing of it was applied). Raises
    :class:`StoreUnavailable` when Redis could not be reached: some events may be applied
    already, and applying them all again is harmless."""
    results: list[bool | ClientError] = [False] * len(batch)
    changes: list[Change] = []
    positions: list[int] = []
    replicated: set[int] = set()  # events carrying a value
    for i, event in enumerate(batch):
        try:
            change, value = _change(store, event)
        except ClientError as exc:
            results[i] = exc
            continue
        changes.append(change)
        positions.append(i)
        if value:
            replicated.add(i)
    markers: list[Change] = []
    marked: list[int] = []
    for i, outcome in zip(positions, await store.run_many(changes), strict=True):
        if isinstance(outcome, ClientError):
            results[i] = outcome
        elif i in replicated and (isinstance(outcome, StoreOutOfMemory) or not outcome[0]):
            # a value not installed still leaves its marker, so nothing older survives
            event = batch[i]
            assert event.key is not None
            markers.append(
                store.tombstone_change(event.ns, event.key, event.version, superseded=True)
            )
            marked.append(i)
        elif isinstance(outcome, StoreOutOfMemory):
            raise outcome  # invalidations run under maxmemory: Redis itself is failing
        else:
            results[i] = outcome[0]
    for i, outcome in zip(marked, await store.run_many(markers), strict=True):
        if isinstance(outcome, StoreOutOfMemory):
            raise outcome
        results[i] = outcome if isinstance(outcome, ClientError) else outcome[0]
    return results


def _change(store: RegionStore, event: Event) -> tuple[Change, bool]:
    """The one script call an event comes to, and whether it installs a value."""
    if event.type == "namespace":
        return store.bump_change(event.ns, None, event.version), False
    if event.type == "tag":
        assert event.tag is not None
        return store.bump_change(event.ns, event.tag, event.version), False
    assert event.key is not None
    if event.op == "delete":
        change = store.tombstone_change(event.ns, event.key, event.version, generation=event.gen)
        return change, False
    value = event.value()
    if value is not None:
        return store.fill_change(event.ns, event.key, _replica(event, value)), True
    return store.tombstone_change(event.ns, event.key, event.version, superseded=True), False


def _replica(event: Event, value: bytes) -> Entry:
    ttl_ms = int((event.ttl or DEFAULT_REPLICA_TTL) * 1000)
    tags = event.tags or ()
    if event.gen is not None and event.tag_versions is not None:
        gen, tag_versions = event.gen, event.tag_versions
    else:
        # a value without stamps (a system of record's) takes the lowest ones, so any
        # invalidation of its namespace or tags voids it whatever the arrival order;
        # taking this region's current stamps would depend on that order
        gen, tag_versions = 0, tuple(0 for _ in tags)
    return Entry(
        value=value,
        content_type=event.content_type or "application/octet-stream",
        version=event.version,
        written_ms=event.ts_ms,
        expires_ms=event.ts_ms + ttl_ms,
        tags=tags,
        generation=gen,
        tag_versions=tag_versions,
    )
