"""One reconcile pass: find what events missed and repair it, bucket by bucket.

For each namespace, every region's leaf digests (what it has *applied*, kept by
the same scripts that apply writes, events and fills) are compared; only the
leaves whose digests differ are compared key by key. The target of a key is
the highest version any reachable region applied: versions originate only at
the key's home region (or its system of record), so that is the authority's
version, and the home region's own index holds it unless the home itself
missed an event. A lagging region gets the same versioned scripts the relay
uses: a superseded marker (or a deleted tombstone, or for ``replicate``
namespaces the value itself), each applied only if newer than what it holds,
so a repair never removes a copy newer than the target, even when a write lands
during the diff. Namespace generations and tag versions are raised to the
highest any region has.

Redis is never blocked: namespaces and buckets come from small registry sets
(an incremental SCAN of the keyspace checks them every tenth pass), digests are
read a page of buckets at a time, leaves in small batches with a pause
between them, and no command touches more than one bucket, so nothing assumes
that two keys share a node.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from redis.exceptions import RedisError

from libs.common import keys
from libs.common.config import PlatformConfig
from libs.common.errors import MrcacheError, StoreUnavailable
from libs.common.naming import check_key
from libs.common.store import Entry, Lookup, RegionStore

log = logging.getLogger(__name__)

_SCAN_COUNT = 1000
# bucket digests read per round trip (16 leaves each)
_DIGEST_PAGE = 512
# repairs in flight at once, shared by the passes and the recent-change checks: enough to
# hide round trips, few enough to stay polite and below every client's connection pool
CONCURRENT_REPAIRS = 16


@dataclass(frozen=True, slots=True)
class Change:
    """A change to check: a key's new version, or (``key`` None) a namespace's metadata."""

    ns: str
    key: str | None
    version: int


@dataclass
class Checked:
    """What a check of recent changes did: repairs per region, how many keys it found
    behind somewhere, and those of them it left unrepaired (past its budget)."""

    repairs: dict[str, int]
    behind: int = 0
    deferred: list[Change] = field(default_factory=list)


@dataclass
class Report:
    """What one pass saw and did."""

    regions: list[str] = field(default_factory=list)
    skipped_regions: list[str] = field(default_factory=list)
    namespaces: int = 0
    leaves_compared: int = 0
    keys_compared: int = 0
    repairs: dict[str, int] = field(default_factory=dict)
    ahead: int = 0
    seconds: float = 0.0
    # whether this pass also scanned the keyspace for unregistered digests
    full_scan: bool = False


class Reconciler:
    def __init__(
        self,
        platform: PlatformConfig,
        stores: Mapping[str, RegionStore],
        *,
        batch: int = 256,
        pause: float = 0.001,
        full_scan_every: int = 10,
    ) -> None:
        self.platform = platform
        self.stores = dict(stores)
        self.batch = batch
        self.pause = pause
        # the first pass and every n-th after it also scan the keyspace (see _inventory)
        self.full_scan_every = full_scan_every
        self.passes = 0
        # one bound for all repairs, so a burst waits its turn instead of exhausting a pool
        self._limit = asyncio.Semaphore(CONCURRENT_REPAIRS)

    async def run_once(self) -> Report:
        started = time.perf_counter()
        report = Report()
        live: dict[str, RegionStore] = {}
        for region, store in self.stores.items():
            try:
                await store.ping()
                live[region] = store
            except StoreUnavailable:
                report.skipped_regions.append(region)
                log.warning("reconciler: region %s unreachable, skipped this pass", region)
        report.regions = sorted(live)
        report.repairs = dict.fromkeys(live, 0)
        report.full_scan = self.passes % self.full_scan_every == 0
        self.passes += 1
        if len(live) >= 2:
            inventory = await self._inventory(live, full=report.full_scan)
            for ns in sorted(inventory):
                report.namespaces += 1
                try:
                    await self._namespace(ns, inventory[ns], live, report)
                except (RedisError, StoreUnavailable) as exc:
                    log.warning("reconciler: namespace %s interrupted: %r", ns, exc)
        report.seconds = time.perf_counter() - started
        return report

    async def _inventory(
        self, live: Mapping[str, RegionStore], *, full: bool
    ) -> dict[str, set[str]]:
        """Every namespace any region knows, with the buckets any region has digests of.

        From the registries the store keeps (a set of namespaces, and per namespace a
        set of buckets), so a pass costs what the namespaces' buckets cost, not what the
        keyspace does. A ``full`` pass also walks the keyspace with SCAN (one per
        primary of a cluster) for digests nobody registered (a crash between a script
        and its registration) and registers them in every region."""
        found: dict[str, set[str]] = {}
        for store in live.values():
            for ns in await store.redis.smembers(keys.NAMESPACES):
                found.setdefault(_text(ns), set())
        names = sorted(found)
        for store in live.values():
            async with store.redis.pipeline(transaction=False) as pipe:
                for ns in names:
                    pipe.smembers(keys.buckets(ns))
                replies = await pipe.execute()
            for ns, members in zip(names, replies, strict=True):
                found[ns].update(_text(b) for b in members)
        if full:
            scanned = await self._scan(live)
            for ns, buckets in scanned.items():
                unregistered = buckets - found.get(ns, set())
                if unregistered or ns not in found:
                    log.info("reconciler: registering %d buckets of %s", len(unregistered), ns)
                    for store in live.values():
                        if unregistered:
                            await store.redis.sadd(keys.buckets(ns), *sorted(unregistered))
                        await store.redis.sadd(keys.NAMESPACES, ns)
                found.setdefault(ns, set()).update(buckets)
        return found

    async def _scan(self, live: Mapping[str, RegionStore]) -> dict[str, set[str]]:
        """Namespaces and digest buckets as the keyspace holds them (incremental SCAN)."""
        found: dict[str, set[str]] = {}
        for store in live.values():
            async for name in store.redis.scan_iter(
                match=keys.INVENTORY_PATTERN, count=_SCAN_COUNT
            ):
                text = _text(name)
                if (digest := keys.parse_digest(text)) is not None:
                    found.setdefault(digest[0], set()).add(digest[1])
                elif (ns := keys.parse_meta(text)) is not None:
                    found.setdefault(ns, set())
        return found

    async def _namespace(
        self, ns: str, buckets: set[str], live: Mapping[str, RegionStore], report: Report
    ) -> None:
        await self._meta(ns, live, report)
        source = self.platform.namespace(ns).source_of_truth
        if source is not None:
            await self._against_source(ns, source, live, report)
        ordered = sorted(buckets)
        digests = {region: await _digests(store, ns, ordered) for region, store in live.items()}
        leaves = set().union(*(d.keys() for d in digests.values()))
        differing = sorted(
            leaf for leaf in leaves if len({d.get(leaf, 0) for d in digests.values()}) > 1
        )
        for start in range(0, len(differing), self.batch):
            batch = differing[start : start + self.batch]
            await self._leaves(ns, batch, live, report)
            report.leaves_compared += len(batch)
            await asyncio.sleep(self.pause)

    async def _against_source(
        self, ns: str, url: str, live: Mapping[str, RegionStore], report: Report
    ) -> None:
        """Bring every region up to a system of record's snapshot of key -> version.

        The snapshot has no digests, so this compares every key it lists (its cost
        follows the snapshot's size); keys it does not list are left alone, since a
        missing row carries no version to order a delete by.
        """
        try:
            async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
                reply = await client.get(url)
                reply.raise_for_status()
                snapshot = _versions(reply.json())
        except (httpx.HTTPError, ValueError, MrcacheError) as exc:
            log.warning("reconciler: source of truth for %s unusable: %r", ns, exc)
            return
        by_leaf: dict[str, dict[str, int]] = {}
        for key, version in snapshot.items():
            by_leaf.setdefault(keys.leaf_of(key), {})[key] = version
        leaves = sorted(by_leaf)
        limit = self._limit
        for start in range(0, len(leaves), self.batch):
            batch = leaves[start : start + self.batch]
            work = []
            for region, store in live.items():
                indexes = await _indexes(store, ns, batch)
                for leaf, index in zip(batch, indexes, strict=True):
                    for key, version in by_leaf[leaf].items():
                        report.keys_compared += 1
                        if index.get(key, 0) < version:
                            work.append(self._mark(store, region, ns, key, version, report, limit))
            await asyncio.gather(*work)
            await asyncio.sleep(self.pause)

    async def _mark(
        self,
        store: RegionStore,
        region: str,
        ns: str,
        key: str,
        version: int,
        report: Report,
        limit: asyncio.Semaphore,
    ) -> None:
        async with limit:
            applied, _ = await store.tombstone(ns, key, version, superseded=True)
            if applied:
                report.repairs[region] += 1

    async def _meta(self, ns: str, live: Mapping[str, RegionStore], report: Report) -> None:
        """Raise every region's namespace generation and tag versions to the highest seen."""
        metas = {
            region: await store.redis.hgetall(keys.namespace_meta(ns))
            for region, store in live.items()
        }
        fields = set().union(*(m.keys() for m in metas.values()))
        for name in fields:
            target = max(int(m.get(name, 0)) for m in metas.values())
            for region, meta in metas.items():
                if int(meta.get(name, 0)) < target:
                    field_name = _text(name)
                    store = live[region]
                    if field_name == keys.NS_GENERATION:
                        applied, _ = await store.bump_namespace(ns, target)
                    else:
                        tag = field_name.removeprefix(keys.TAG_FIELD_PREFIX)
                        applied, _ = await store.bump_tag(ns, tag, target)
                    if applied:
                        report.repairs[region] += 1
                        log.info(
                            "reconciler repaired %s of %s in %s to %d",
                            field_name,
                            ns,
                            region,
                            target,
                        )

    async def _leaves(
        self, ns: str, batch: list[str], live: Mapping[str, RegionStore], report: Report
    ) -> None:
        """Compare a batch of differing leaves key by key and repair the lagging regions."""
        regions = list(live)
        fetched = await asyncio.gather(*(_indexes(live[r], ns, batch) for r in regions))
        replicate = self.platform.namespace(ns).propagation == "replicate"
        limit = self._limit
        work = []
        for position in range(len(batch)):
            indexes = {r: fetched[i][position] for i, r in enumerate(regions)}
            every_key = set().union(*(i.keys() for i in indexes.values()))
            report.keys_compared += len(every_key)
            for key in every_key:
                versions = {r: index.get(key, 0) for r, index in indexes.items()}
                repair = self._bring_up(ns, key, versions, live, replicate, report, limit)
                if repair is not None:
                    work.append(repair)
        await asyncio.gather(*work)

    async def check_changes(
        self, changes: Sequence[Change], *, budget: int | None = None
    ) -> Checked:
        """Check recent changes in every reachable region and repair where one is behind
        (the fast lane of :mod:`services.reconciler.recent`), at most ``budget`` keys: the
        keys found behind past it are left unrepaired in :attr:`Checked.deferred` (a region
        far behind on many keys at once is a relay catching up, which repairing would only
        race and slow down, so the caller looks again later).

        A region that does not answer is left out of this batch (the full pass covers it).
        """
        report = Report(repairs=dict.fromkeys(self.stores, 0))
        checked = Checked(report.repairs)
        for ns in sorted({c.ns for c in changes if c.key is None}):
            try:
                await self._meta(ns, self.stores, report)
            except (RedisError, StoreUnavailable) as exc:
                log.info("reconciler: recent change of %s not checked: %r", ns, exc)
        by_ns: dict[str, set[str]] = {}
        for change in changes:
            if change.key is not None:
                by_ns.setdefault(change.ns, set()).add(change.key)
        limit = self._limit
        for ns, names in sorted(by_ns.items()):
            ordered = sorted(names)
            applied: dict[str, list[int]] = {}
            for region, store in self.stores.items():
                try:
                    applied[region] = await _applied(store, ns, ordered)
                except (RedisError, StoreUnavailable) as exc:
                    log.info("reconciler: %s skipped for recent changes: %r", region, exc)
            if len(applied) < 2:
                continue
            live = {region: self.stores[region] for region in applied}
            replicate = self.platform.namespace(ns).propagation == "replicate"
            work = []
            for i, key in enumerate(ordered):
                versions = {region: found[i] for region, found in applied.items()}
                if len(set(versions.values())) > 1:
                    checked.behind += 1
                    if budget is not None and checked.behind > budget:
                        checked.deferred.append(Change(ns, key, max(versions.values())))
                        continue
                repair = self._bring_up(ns, key, versions, live, replicate, report, limit)
                if repair is not None:
                    work.append(repair)
            for outcome in await asyncio.gather(*work, return_exceptions=True):
                if isinstance(outcome, Exception):
                    log.info("reconciler: a recent-change repair failed: %r", outcome)
        return checked

    def _bring_up(
        self,
        ns: str,
        key: str,
        versions: Mapping[str, int],
        live: Mapping[str, RegionStore],
        replicate: bool,
        report: Report,
        limit: asyncio.Semaphore,
    ) -> Coroutine[Any, Any, None] | None:
        """The repair of the regions behind the highest applied version of a key, if any."""
        target = max(versions.values())
        lagging = {r: live[r] for r, v in versions.items() if v < target}
        if not lagging:
            return None
        holder = next(r for r, v in versions.items() if v == target)
        return self._repair(ns, key, target, live[holder], lagging, replicate, report, limit)

    async def _repair(
        self,
        ns: str,
        key: str,
        target: int,
        holder: RegionStore,
        lagging: Mapping[str, RegionStore],
        replicate: bool,
        report: Report,
        limit: asyncio.Semaphore,
    ) -> None:
        async with limit:
            deleted, copy = await _state_of(holder, ns, key, target)
            for region, store in lagging.items():
                if copy is not None and replicate:
                    applied, _ = await store.fill(ns, key, copy)
                    if applied:
                        report.repairs[region] += 1
                        continue
                # applied only when newer than what the region holds: never removes a newer copy
                applied, _ = await store.tombstone(ns, key, target, superseded=not deleted)
                if applied:
                    report.repairs[region] += 1


async def _applied(store: RegionStore, ns: str, names: list[str]) -> list[int]:
    """The applied version of each key (0 for none), in one round trip."""
    async with store.redis.pipeline(transaction=False) as pipe:
        for key in names:
            pipe.hget(keys.index(ns, keys.leaf_of(key)), key)
        replies = await pipe.execute()
    return [int(v) if v is not None else 0 for v in replies]


async def _indexes(store: RegionStore, ns: str, leaves: list[str]) -> list[dict[str, int]]:
    """The applied-version index of each leaf, in one round trip."""
    async with store.redis.pipeline(transaction=False) as pipe:
        for leaf in leaves:
            pipe.hgetall(keys.index(ns, leaf))
        replies = await pipe.execute()
    return [{_text(k): int(v) for k, v in raw.items()} for raw in replies]


async def _state_of(
    store: RegionStore,
    ns: str,
    key: str,
    version: int,
) -> tuple[bool, Entry | None]:
    """Whether the holder's copy at ``version`` is a delete, and its value if it holds one."""
    result = await store.read(ns, key)
    if result.held_version != version:
        return False, None
    if result.lookup is Lookup.TOMBSTONE:
        return True, None
    return False, result.entry


async def _digests(store: RegionStore, ns: str, buckets: list[str]) -> dict[str, int]:
    """Leaf -> digest over the given buckets, a page of buckets per round trip."""
    found: dict[str, int] = {}
    for start in range(0, len(buckets), _DIGEST_PAGE):
        async with store.redis.pipeline(transaction=False) as pipe:
            for bucket in buckets[start : start + _DIGEST_PAGE]:
                pipe.hgetall(keys.digest(ns, bucket))
            replies = await pipe.execute()
        for raw in replies:
            found.update((_text(leaf), int(value)) for leaf, value in raw.items())
    return found


def _versions(body: Any) -> dict[str, int]:
    """Validate a snapshot: a JSON object of non-empty keys to positive integer versions."""
    if not isinstance(body, dict):
        raise ValueError("the snapshot must be a JSON object of key -> version")
    out: dict[str, int] = {}
    for key, version in body.items():
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"version of {key!r} must be a positive integer")
        out[check_key(key)] = version
    return out


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
