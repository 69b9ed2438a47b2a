"""Where a region gets the stamps an entry is written under.

An entry is valid while its stamps (the namespace generation and its tags'
versions when it was written) are not older than the namespace's current ones.
Stamps must come from the region that assigns generations and tag versions: the
namespace's home, which is where every namespace or tag invalidation is applied
first. With a fixed home that region also applies every write, so it stamps from
its own Redis. With ``home_region = "hash"`` a key's home is usually another
region than the namespace's: it asks the namespace's home for the stamps, because
its own copy of the metadata may not have the last acknowledged invalidation yet
(the event is on its way), and an entry stamped with it would be voided when the
event arrives, although it was written after the invalidation.
"""

from __future__ import annotations

from collections.abc import Callable

from libs.common.store import RegionStore, Stamps
from services.regional_cache.regions import RegionClient


class Stamper:
    """``await stamper(ns, tags)``: the stamps to write an entry of ``ns`` under."""

    def __init__(
        self,
        region: str,
        store: RegionStore,
        regions: RegionClient,
        namespace_home: Callable[[str], str],
    ) -> None:
        self.region = region
        self.store = store
        self.regions = regions
        self.namespace_home = namespace_home

    async def __call__(self, ns: str, tags: tuple[str, ...] = ()) -> Stamps:
        home = self.namespace_home(ns)
        if home == self.region:
            return await self.store.stamps(ns, tags)
        return await self.regions.fetch_stamps(home, ns, tags)

    async def for_write(self, ns: str, tags: tuple[str, ...] = ()) -> Stamps | None:
        """The stamps for :meth:`RegionStore.write`: None when this region is the
        namespace's home, so the write stamps the entry itself (on a standalone Redis in
        the same script, saving a round trip)."""
        home = self.namespace_home(ns)
        if home == self.region:
            return None
        return await self.regions.fetch_stamps(home, ns, tags)
