"""The near cache's own bounds, without Redis: the staleness bound, the soft TTL,
and invalidation by key and by namespace metadata."""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from libs.common import keys
from libs.common.metrics import Metrics
from libs.common.store import Entry
from services.regional_cache.nearcache import NearCache, _Copy


def entry(ttl_s: float = 60.0) -> Entry:
    now = int(time.time() * 1000)
    return Entry(b"v", "x", 1, now, now + int(ttl_s * 1000), ())


def holding(*items: tuple[str, str], ttl_s: float = 60.0, max_entries: int = 10) -> NearCache:
    near = NearCache(
        Redis(), Metrics(), "r", staleness_ms=100, max_entries=max_entries, max_value_bytes=10
    )
    for ns, key in items:
        copy = _Copy(entry(ttl_s), time.monotonic(), keys.entry(ns, key), keys.namespace_meta(ns))
        near._copies[(ns, key)] = copy
        near._by_entry_key[copy.entry_key] = (ns, key)
        near._by_meta_key.setdefault(copy.meta_key, set()).add((ns, key))
    return near


def test_a_copy_is_served_only_within_the_staleness_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    near = holding(("a", "k"))
    assert near.get("a", "k") is not None
    later = time.monotonic() + 0.101
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert near.get("a", "k") is None and len(near) == 0


def test_a_copy_past_its_soft_ttl_is_not_served() -> None:
    near = holding(("a", "k"), ttl_s=-1)
    assert near.get("a", "k") is None


def test_invalidation_of_an_entry_or_its_namespace_meta_drops_copies() -> None:
    near = holding(("a", "k1"), ("a", "k2"), ("b", "k1"))
    near._invalidated([keys.entry("a", "k1")])
    assert near.get("a", "k1") is None and near.get("a", "k2") is not None
    near._invalidated([keys.namespace_meta("a")])
    assert near.get("a", "k2") is None and near.get("b", "k1") is not None
    near.clear()
    assert len(near) == 0
