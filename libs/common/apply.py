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

from libs.common.errors import StoreOutOfMemory
from libs.common.events import Event
from libs.common.store import Entry, RegionStore

DEFAULT_REPLICA_TTL = 3600.0


async def apply_event(store: RegionStore, event: Event) -> bool:
    """Apply one event; returns whether it changed anything."""
    if event.type == "namespace":
        applied, _ = await store.bump_namespace(event.ns, event.version)
        return applied
    if event.type == "tag":
        assert event.tag is not None
        applied, _ = await store.bump_tag(event.ns, event.tag, event.version)
        return applied
    assert event.key is not None
    if event.op == "delete":
        applied, _ = await store.tombstone(event.ns, event.key, event.version, generation=event.gen)
        return applied
    value = event.value()
    if value is not None:
        try:
            installed, _ = await store.fill(event.ns, event.key, _replica(event, value))
        except StoreOutOfMemory:
            installed = False  # the marker below takes no memory the value would
        if installed:
            return True
    applied, _ = await store.tombstone(event.ns, event.key, event.version, superseded=True)
    return applied


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
