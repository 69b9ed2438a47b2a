"""What a region would serve a client for a key, asked without serving it.

The consistency meter must see what clients are served, and must not change it
by looking: a plain ``GET`` may fill a miss, refresh a stale copy (SWR, XFetch)
and counts toward hot-key detection. :func:`probe_many` follows the decisions of
the GET path (``routes/keys.py``: the near cache of a hot key, then the region's
Redis, then ``_miss``) for a read without ``min_version`` and takes none of their
actions. Its states:

* ``hit``: a valid copy is served (``X-Cache: HIT``), at ``version``;
* ``stale``: an expired copy is served while it revalidates (``X-Cache: STALE``);
* ``negative``: a remembered origin 404 is served as 404;
* ``tombstone``: a delete is served as 404 (``version`` is the delete's);
* ``absent``: nothing here would be served: the read goes to the key's home or origin
  (nothing held, an invalidated or superseded copy, an expired one without SWR).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from libs.common.store import Entry, Lookup, ReadResult
from services.regional_cache.runtime import Runtime

# keys one probe request may ask about
MAX_PROBE_KEYS = 500


def _entry(state: str, entry: Entry, source: str) -> dict[str, Any]:
    return {
        "state": state,
        "version": entry.version,
        "generation": entry.generation,
        "tags": dict(zip(entry.tags, entry.tag_versions, strict=False)),
        "written_ms": entry.written_ms,
        "source": source,
    }


def served(rt: Runtime, ns: str, key: str, result: ReadResult) -> dict[str, Any]:
    """The state of ``key`` as a plain GET in this process would find it now."""
    near = rt.near
    if near is not None and rt.hotkeys.is_hot(ns, key):
        copy = near.peek(ns, key)
        if copy is not None:
            return _entry("hit", copy, "near")
    lookup = result.lookup
    if lookup is Lookup.HIT and result.entry is not None:
        return _entry("hit", result.entry, "redis")
    if lookup is Lookup.EXPIRED and result.entry is not None:
        if rt.namespace(ns).stale_while_revalidate:
            return _entry("stale", result.entry, "redis")
    elif lookup in (Lookup.NEGATIVE, Lookup.TOMBSTONE):
        return {
            "state": lookup.value,
            "version": result.held_version,
            "generation": result.generation,
            "source": "redis",
        }
    return {"state": "absent", "version": None, "held_version": result.held_version}


async def probe_many(rt: Runtime, items: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """:func:`served` for each (namespace, key), reading each namespace's keys in one
    round trip."""
    by_ns: dict[str, list[int]] = defaultdict(list)
    for i, (ns, _) in enumerate(items):
        by_ns[ns].append(i)
    out: list[dict[str, Any]] = [{} for _ in items]
    for ns, positions in by_ns.items():
        results = await rt.store.read_many(ns, [items[i][1] for i in positions])
        for i, result in zip(positions, results, strict=True):
            out[i] = {"ns": ns, "key": items[i][1], **served(rt, ns, items[i][1], result)}
    return out
