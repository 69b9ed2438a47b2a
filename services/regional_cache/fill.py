"""Filling a miss: in the key's home region from the namespace's origin; elsewhere
by copying the home's entry.

Only the home region assigns versions, so only the home fills from the origin. A
region that is not the key's home asks the home for its copy, and the home fills
it from the origin first when it holds none (``fetch_entry(fill=True)``); the copy
is installed with the versioned fill script, which refuses it when this region
already knows a newer version (a superseded marker or tombstone left by an event):
a slow fill of v1 that loses the race against v2's invalidation can never install
v1. The copy keeps the home's stamps, so a namespace or tag invalidation that
reached this region first voids it too. When the home cannot be reached, a read
gets the origin's answer served but not cached (no version is made up for it).

Origin fills are single-flight across every process of the region: in-process
callers share one fetch, and processes share a Redis lease per key. The lease
holder fetches; the others wait for its fill (or are served the stale copy).
Every change of the entry (a write, a delete, an event, a remote fill) revokes
the lease, and the install is refused when the lease is gone, so an origin
answer that raced a change is never installed. The stamps are taken before the
fetch, so a namespace invalidation during it voids the value; a fill that ends
voided, revoked or refused fetches again, since what changed meanwhile is newer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
import uuid

from libs.common.config import NamespaceConfig
from libs.common.errors import (
    HomeUnavailable,
    OriginUnavailable,
    StoreUnavailable,
    VersionExhausted,
)
from libs.common.naming import jittered_ttl
from libs.common.origin import OriginClient, OriginResult
from libs.common.singleflight import SingleFlight
from libs.common.store import Entry, Lookup, RegionStore
from services.regional_cache.regions import RegionClient
from services.regional_cache.stamps import Stamper

log = logging.getLogger(__name__)

_ATTEMPTS = 3
_POLL = 0.01


class Filler:
    """One fill per key at a time in this process; ``start()`` / ``stop()`` own refreshes."""

    def __init__(
        self,
        region: str,
        store: RegionStore,
        regions: RegionClient,
        origins: OriginClient,
        stamper: Stamper,
        *,
        lease_ttl: float,
        max_ttl: float,
        drill_delay: float = 0.0,
    ) -> None:
        self.region = region
        self.store = store
        self.regions = regions
        self.origins = origins
        self.stamper = stamper
        self.lease_ttl = lease_ttl
        self.max_ttl = max_ttl
        self.drill_delay = drill_delay
        self._flights: SingleFlight[Entry | None] = SingleFlight()
        self._refreshing: set[asyncio.Task[None]] = set()
        # keys whose background refresh waits out its spread delay
        self._deferred: set[tuple[str, str]] = set()
        self.fetch_seconds: dict[str, float] = {}

    async def stop(self) -> None:
        for task in list(self._refreshing):
            task.cancel()
        for task in list(self._refreshing):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def fill(
        self,
        ns: str,
        key: str,
        home: str,
        cfg: NamespaceConfig,
        *,
        uncached: bool = False,
        floor: int = 0,
    ) -> Entry | None:
        """The entry as now held here, or ``None`` when neither home nor origin has it.

        ``floor`` is a read's ``min_version``: the home fills again from the origin when
        its own copy is older (in a namespace a system of record feeds, the home may not
        have applied the record's newest change yet). With ``uncached``, a region whose
        home is unreachable answers with the origin's answer without caching it: an entry
        of version 0 (none is known for it)."""
        flight = (ns, key) if not floor else (ns, key, floor)
        entry = await self._flights.do(flight, lambda: self._fill(ns, key, home, cfg, floor))
        if entry is _HOME_AWAY:
            if not uncached or cfg.origin is None:
                raise HomeUnavailable(
                    f"home region {home} of {ns}/{key} is unreachable", home_region=home
                )
            return await self._uncached(ns, key, cfg.origin)
        return entry

    def refresh(
        self, ns: str, key: str, home: str, cfg: NamespaceConfig, *, spread: bool = True
    ) -> None:
        """Refill in the background (stale-while-revalidate); at most one per key. With
        ``spread`` and the namespace's ``refresh_spread``, after a random delay."""
        if (ns, key) in self._flights or (ns, key) in self._deferred:
            return
        delay = (
            random.uniform(0, min(cfg.refresh_spread, cfg.stale_while_revalidate / 2))
            if spread and cfg.refresh_spread
            else 0.0
        )
        if delay:
            self._deferred.add((ns, key))
        task = asyncio.create_task(self._refresh(ns, key, home, cfg, delay))
        self._refreshing.add(task)
        task.add_done_callback(self._refreshing.discard)

    def early_refresh(
        self, ns: str, key: str, home: str, cfg: NamespaceConfig, entry: Entry
    ) -> None:
        """XFetch (Vattani et al.): refresh a hit before it expires with a probability
        that grows as expiry nears and with the cost of a refresh, so a hot key is
        refreshed once, early, instead of stampeding when it expires."""
        delta = self.fetch_seconds.get(ns, 0.1)
        now = time.time()
        if now - delta * cfg.xfetch_beta * math.log(1.0 - random.random()) >= (
            entry.expires_ms / 1000
        ):
            self.refresh(ns, key, home, cfg, spread=False)

    async def _refresh(
        self, ns: str, key: str, home: str, cfg: NamespaceConfig, delay: float
    ) -> None:
        try:
            if delay:
                try:
                    await asyncio.sleep(delay)
                finally:
                    self._deferred.discard((ns, key))
                # another process of the region may have refreshed it meanwhile
                if (await self.store.read(ns, key)).lookup is not Lookup.EXPIRED:
                    return
            await self.fill(ns, key, home, cfg)
        except (HomeUnavailable, OriginUnavailable, StoreUnavailable) as exc:
            log.info("background refresh of %s/%s failed: %s", ns, key, exc.message)

    async def _fill(
        self, ns: str, key: str, home: str, cfg: NamespaceConfig, floor: int = 0
    ) -> Entry | None:
        if home != self.region:
            try:
                return await self._from_home(ns, key, home, cfg, floor)
            except HomeUnavailable:
                if cfg.origin is None:
                    raise
                return _HOME_AWAY  # the caller decides whether to ask the origin uncached
        if cfg.origin is None:
            return None
        return await self._from_origin(ns, key, cfg, cfg.origin)

    async def _from_home(
        self,
        ns: str,
        key: str,
        home: str,
        cfg: NamespaceConfig,
        floor: int = 0,
    ) -> Entry | None:
        for _ in range(_ATTEMPTS):
            fetched = await self.regions.fetch_entry(
                home, ns, key, fill=cfg.origin is not None, floor=floor
            )
            if fetched.entry is None:
                return None
            if self.drill_delay:
                # fault drill: widen the window between fetch and install
                await asyncio.sleep(self.drill_delay)
            await self.store.fill(
                ns, key, fetched.entry, keep_after_expiry=cfg.stale_while_revalidate
            )
            after = await self.store.read(ns, key)
            if after.lookup is Lookup.HIT and after.entry is not None:
                if after.entry.version >= fetched.entry.version:
                    return after.entry
            elif after.lookup is Lookup.TOMBSTONE and after.held_version >= fetched.entry.version:
                return None  # deleted here since: nothing valid to serve
            elif after.lookup is Lookup.EXPIRED:
                return fetched.entry  # expired on arrival: serve what the home had
            # superseded by a newer version than the home gave, or voided by an
            # invalidation this region has and the home had not yet: ask the home again
        raise HomeUnavailable(
            f"home region {home} has not caught up with this region's newer version",
            home_region=home,
        )

    async def _uncached(self, ns: str, key: str, template: str) -> Entry | None:
        """The origin's answer, served without caching it (the key's home is unreachable,
        and only the home may give it a version)."""
        result = await self.origins.fetch(ns, template, key)
        return _passing(result) if result.found else None

    async def _from_origin(
        self,
        ns: str,
        key: str,
        cfg: NamespaceConfig,
        template: str,
    ) -> Entry | None:
        for _ in range(_ATTEMPTS):
            token = uuid.uuid4().hex
            if not await self.store.acquire_lease(ns, key, token, self.lease_ttl):
                return await self._await_other_fill(ns, key)
            # stamps first: an invalidation during the fetch must void what it returns
            try:
                generation, _ = await self.stamper(ns)
            except HomeUnavailable:
                await self.store.release_lease(ns, key, token)
                raise
            started = time.monotonic()
            try:
                result = await self.origins.fetch(ns, template, key)
            except OriginUnavailable:
                await self.store.release_lease(ns, key, token)
                raise
            spent = time.monotonic() - started
            # smoothed fetch time: XFetch's estimate of what a refresh costs
            self.fetch_seconds[ns] = 0.8 * self.fetch_seconds.get(ns, spent) + 0.2 * spent
            if self.drill_delay:
                await asyncio.sleep(self.drill_delay)
            if result.found and result.max_age == 0:
                # the origin says not to cache: serve this answer, keep nothing
                await self.store.release_lease(ns, key, token)
                return _passing(result)
            ttl = self._ttl(cfg, result.max_age)
            try:
                written = await self.store.origin_fill(
                    ns,
                    key,
                    token,
                    value=result.value if result.found else None,
                    content_type=result.content_type,
                    version=result.version,
                    ttl=ttl if result.found else max(cfg.negative_ttl, 0.001),
                    generation=generation,
                    keep_after_expiry=cfg.stale_while_revalidate,
                    source_versions=cfg.versions == "source",
                )
            except VersionExhausted:
                # the key can take no newer version: serve the answer, keep nothing
                return _passing(result) if result.found else None
            if written is not None and not result.found:
                return None
            after = await self.store.read(ns, key)
            if after.lookup is Lookup.HIT and after.entry is not None:
                return after.entry
            if after.lookup in (Lookup.TOMBSTONE, Lookup.NEGATIVE):
                return None
            # revoked by a change during the fetch, or voided by an invalidation during
            # it: fetch again, for what the origin holds after that change
        raise OriginUnavailable(f"could not fill {ns}/{key}: it kept changing during fills")

    async def _await_other_fill(self, ns: str, key: str) -> Entry | None:
        """Another process holds the lease: wait for its fill instead of a second fetch."""
        deadline = time.monotonic() + self.lease_ttl
        while time.monotonic() < deadline:
            await asyncio.sleep(_POLL)
            result = await self.store.read(ns, key)
            if result.lookup is Lookup.HIT and result.entry is not None:
                return result.entry
            if result.lookup in (Lookup.NEGATIVE, Lookup.TOMBSTONE):
                return None
        raise OriginUnavailable(f"the fill of {ns}/{key} in progress did not finish in time")

    def _ttl(self, cfg: NamespaceConfig, max_age: float | None) -> float:
        base = cfg.default_ttl if max_age is None else max_age
        return jittered_ttl(base, cfg.ttl_jitter, self.max_ttl)


def _passing(result: OriginResult) -> Entry:
    """An origin answer served once and not cached: no version known (0), expired at once
    (``expires_ms`` 0, so nothing copies it)."""
    return Entry(result.value, result.content_type, 0, int(time.time() * 1000), 0, ())


def served_uncached(entry: Entry) -> bool:
    return entry.expires_ms == 0


# what _fill answers when the key's home is unreachable (the caller may ask the origin)
_HOME_AWAY = Entry(b"", "", -1, 0, 0, ())
