"""Filling a miss: from the key's home region, else from the namespace's origin.

Remote fills copy the home's entry and install it with the versioned fill
script, which refuses it when this region already knows a newer version (a
superseded marker or tombstone left by an event): a slow fill of v1 that loses
the race against v2's invalidation can never install v1. The copy keeps the
home's stamps, so a namespace or tag invalidation that reached this region
first voids it too.

Origin fills are single-flight across every process of the region: in-process
callers share one fetch, and processes share a Redis lease per key. The lease
holder fetches; the others wait for its fill (or are served the stale copy).
Every change of the entry (a write, a delete, an event, a remote fill) revokes
the lease, and the install is refused when the lease is gone, so an origin
answer that raced a change is never installed. The namespace generation is
read before the fetch, so a namespace invalidation during it voids the value.
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
from libs.common.errors import HomeUnavailable, OriginUnavailable, StoreUnavailable
from libs.common.naming import jittered_ttl
from libs.common.origin import OriginClient
from libs.common.singleflight import SingleFlight
from libs.common.store import Entry, Lookup, RegionStore
from services.regional_cache.regions import RegionClient

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
        *,
        lease_ttl: float,
        max_ttl: float,
        drill_delay: float = 0.0,
    ) -> None:
        self.region = region
        self.store = store
        self.regions = regions
        self.origins = origins
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

    async def fill(self, ns: str, key: str, home: str, cfg: NamespaceConfig) -> Entry | None:
        """The entry as now held here, or ``None`` when neither home nor origin has it."""
        return await self._flights.do((ns, key), lambda: self._fill(ns, key, home, cfg))

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

    async def _fill(self, ns: str, key: str, home: str, cfg: NamespaceConfig) -> Entry | None:
        if home != self.region:
            try:
                entry = await self._from_home(ns, key, home, cfg)
                if entry is not None or cfg.origin is None:
                    return entry
            except HomeUnavailable:
                if cfg.origin is None:
                    raise
        if cfg.origin is None:
            return None
        return await self._from_origin(ns, key, cfg, cfg.origin)

    async def _from_home(
        self,
        ns: str,
        key: str,
        home: str,
        cfg: NamespaceConfig,
    ) -> Entry | None:
        for _ in range(_ATTEMPTS):
            fetched = await self.regions.fetch_entry(home, ns, key)
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
            elif after.lookup in (Lookup.TOMBSTONE, Lookup.INVALIDATED, Lookup.EXPIRED):
                # deleted, invalidated or expired here: nothing valid to serve
                return None
            # superseded by a newer version than the home gave: ask the home again
        raise HomeUnavailable(
            f"home region {home} has not caught up with this region's newer version",
            home_region=home,
        )

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
            generation, _ = await self.store.stamps(ns, ())
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
                now = int(time.time() * 1000)
                return Entry(result.value, result.content_type, result.version or 1, now, now, ())
            ttl = self._ttl(cfg, result.max_age)
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
            )
            if written is not None and not result.found:
                return None
            after = await self.store.read(ns, key)
            if after.lookup is Lookup.HIT and after.entry is not None:
                return after.entry
            if after.lookup in (Lookup.TOMBSTONE, Lookup.NEGATIVE, Lookup.INVALIDATED):
                return None
            # revoked by a change during the fetch: fetch again for the current value
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
