"""API keys with scopes over namespace patterns (api.md, "Authentication").

Keys live in the config file as SHA-256 digests, never in clear. A presented
key is hashed and compared with every configured digest in constant time, so
neither its value nor which key it resembles leaks through timing. ``admin``
implies every scope on every namespace.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from libs.common.config import AuthKey

SCOPES = ("read", "write", "invalidate", "admin")
# the header carrying the internal token of region-to-region routes (/internal/...)
INTERNAL_HEADER = "x-mrcache-internal"


def presents_token(presented: str | None, token: bytes | None) -> bool:
    """Whether ``presented`` (the internal header's value) is the configured internal
    token, compared in constant time; never when no token is configured."""
    if token is None:
        return False
    return hmac.compare_digest((presented or "").encode(), token)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who presented a valid key: its name and what it may do."""

    name: str
    scopes: frozenset[str]
    namespaces: tuple[str, ...]

    def allows(self, scope: str, ns: str | None) -> bool:
        """``scope`` on ``ns``; the pseudo-scope ``any`` asks only for a valid key."""
        if "admin" in self.scopes or scope == "any":
            return True
        if scope not in self.scopes:
            return False
        if ns is None:
            return scope != "admin"
        return any(fnmatch.fnmatchcase(ns, pattern) for pattern in self.namespaces)


class Authenticator:
    def __init__(self, keys: Sequence[AuthKey]) -> None:
        self._keys = [
            (
                bytes.fromhex(k.secret_sha256),
                Identity(k.name, frozenset(k.scopes), tuple(k.namespaces)),
            )
            for k in keys
        ]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def identify(self, authorization: str | None) -> Identity | None:
        """The identity of an ``Authorization: Bearer <key>`` header, or None."""
        if not authorization:
            return None
        scheme, _, secret = authorization.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            return None
        digest = hashlib.sha256(secret.strip().encode()).digest()
        found = None
        for expected, identity in self._keys:
            # no early exit: every presented key costs the same comparisons
            if hmac.compare_digest(digest, expected):
                found = identity
        return found


def sha256_hex(secret: str) -> str:
    """What goes into ``secret_sha256`` for a key (``mrcache`` users run this once)."""
    return hashlib.sha256(secret.encode()).hexdigest()
