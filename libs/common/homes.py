"""Which region is home for a key: the only region that applies its writes."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from libs.common.config import NamespaceConfig, PlatformConfig


def home_region(cfg: NamespaceConfig, regions: Sequence[str], ns: str, key: str | None) -> str:
    """The namespace's fixed home, or with ``"hash"`` the rendezvous winner for the key.

    Rendezvous (highest random weight) hashing is stable (a key moves only when
    its own winner is removed) and spreads keys evenly. Namespace-wide
    operations (``key=None``) hash the namespace alone.
    """
    home = cfg.home_region
    if home is not None and home != "hash":
        return home
    item = f"{ns}\x00{key}" if key is not None else ns
    return max(regions, key=lambda region: _weight(region, item))


def _weight(region: str, item: str) -> bytes:
    return hashlib.blake2b(f"{region}\x00{item}".encode(), digest_size=8).digest()


def home_finder(platform: PlatformConfig) -> Callable[[str, str | None], str]:
    """``home(ns, key)`` for the platform, each namespace's effective config resolved once
    (up to 10,000 namespaces kept)."""
    configs: dict[str, NamespaceConfig] = {}
    regions = platform.platform.regions

    def home(ns: str, key: str | None) -> str:
        cfg = configs.get(ns)
        if cfg is None:
            cfg = platform.namespace(ns)
            if len(configs) < 10_000:
                configs[ns] = cfg
        return home_region(cfg, regions, ns, key)

    return home
