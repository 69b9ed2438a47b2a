"""Which region is home for a key: the only region that applies its writes."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from libs.common.config import NamespaceConfig


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
