"""Digests of what a region has applied, as the Lua scripts keep them.

Every script that changes a key's applied version keeps, per namespace and per
leaf (the first 4 hex digits of ``sha1(key)``: 65,536 leaves), the sum of
``h(key, version)`` modulo 2**48 over the leaf's keys. Two regions that applied
the same versions have equal leaf digests, whatever each evicted or let
expire, so the reconciler compares leaves first and keys only where leaves
differ: its cost follows the divergence, not the key count.
"""

from __future__ import annotations

import hashlib

DIGEST_MOD = 2**48


def h(key: str, version: int) -> int:
    """The 48-bit contribution of one applied (key, version), as in ``_applied.lua``."""
    data = key.encode() + b"\x00" + str(version).encode()
    return int(hashlib.sha1(data, usedforsecurity=False).hexdigest()[:12], 16)


def leaf_digest(versions: dict[str, int]) -> int:
    """The digest of a leaf from its applied versions (for checks and tests)."""
    return sum(h(key, version) for key, version in versions.items()) % DIGEST_MOD
