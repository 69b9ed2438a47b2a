"""Remote fills: a miss outside the key's home region copies the home's entry.

The copy is installed by the versioned fill script, which refuses it when this
region already knows a newer version (a superseded marker or tombstone left by
an event). That refusal is what closes the stale-set race: a slow fill of v1
that loses the race against v2's invalidation can never install v1. The entry
keeps the home's stamps, so a namespace or tag invalidation that reached this
region first voids it too. After installing, the region reads its own copy
back and serves only what is valid there.
"""

from __future__ import annotations

import asyncio

from libs.common.errors import HomeUnavailable
from libs.common.singleflight import SingleFlight
from libs.common.store import Entry, Lookup, RegionStore
from services.regional_cache.regions import RegionClient

_ATTEMPTS = 3


class RemoteFiller:
    """One fill per key at a time in this process; concurrent misses share it."""

    def __init__(
        self,
        store: RegionStore,
        regions: RegionClient,
        *,
        drill_delay: float = 0.0,
    ) -> None:
        self.store = store
        self.regions = regions
        self.drill_delay = drill_delay
        self._flights: SingleFlight[Entry | None] = SingleFlight()

    async def fill(
        self,
        ns: str,
        key: str,
        home: str,
        *,
        keep_after_expiry: float = 0.0,
    ) -> Entry | None:
        """The entry as now held here, or ``None`` when the home holds no valid copy."""
        return await self._flights.do(
            (ns, key), lambda: self._fill(ns, key, home, keep_after_expiry)
        )

    async def _fill(self, ns: str, key: str, home: str, keep: float) -> Entry | None:
        for _ in range(_ATTEMPTS):
            fetched = await self.regions.fetch_entry(home, ns, key)
            if fetched.entry is None:
                return None
            if self.drill_delay:
                # fault drill: widen the window between fetch and install
                await asyncio.sleep(self.drill_delay)
            await self.store.fill(ns, key, fetched.entry, keep_after_expiry=keep)
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
