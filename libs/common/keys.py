"""The whole Redis key schema of a region, in one place.

Every key of one cache entry carries the same hash tag ``{<ns>/<key>}`` so
that a Lua script touching an entry (value, tombstone, and later its lease)
stays inside one Redis Cluster hash slot. Namespace metadata (generation and
tag versions) lives in one hash per namespace under its own tag, read with
plain commands next to the entry, never inside a cross-slot script.

==============================  =====  =============================================
key                             type   holds
==============================  =====  =============================================
``mrc:e:{<ns>/<key>}``          hash   one entry: value or tombstone (fields below)
``mrc:l:{<ns>/<key>}``          str    lease token of the one origin fill in flight
                                       (revoked by every change of the entry)
``mrc:n:{<ns>}``                hash   ``gen`` (namespace generation), ``t:<tag>``
                                       (tag versions); absent = never invalidated
``mrc:ix:{<ns>}:<leaf>``        hash   applied version of every key of the leaf (never
                                       evicted; leaf = 4 hex digits of sha1(key))
``mrc:dg:{<ns>}``               hash   per leaf: sum of h(key, applied version) mod 2^48
``mrc:outbox:{<region>}``       list   encoded events waiting for Kafka, oldest first
``mrc:outbox-lock:{<region>}``  str    token of the process draining the outbox
==============================  =====  =============================================

Entry hash fields: ``v`` value bytes, ``ct`` content type, ``ver`` version,
``ts`` write time (epoch ms), ``exp`` soft expiry (epoch ms), ``gen`` namespace
generation at write, ``tg`` tags joined by ``,``, ``tv`` the tags' versions at
write joined by ``,``, ``tomb``: ``1`` deleted, ``m`` superseded (a newer version
exists elsewhere), ``n`` negative (the origin answered 404), none for a value.
"""

from __future__ import annotations

import hashlib

PREFIX = "mrc"

F_VALUE = "v"
F_CONTENT_TYPE = "ct"
F_VERSION = "ver"
F_WRITTEN_MS = "ts"
F_EXPIRES_MS = "exp"
F_GENERATION = "gen"
F_TAGS = "tg"
F_TAG_VERSIONS = "tv"
F_TOMBSTONE = "tomb"

ENTRY_FIELDS = (
    F_VALUE,
    F_CONTENT_TYPE,
    F_VERSION,
    F_WRITTEN_MS,
    F_EXPIRES_MS,
    F_GENERATION,
    F_TAGS,
    F_TAG_VERSIONS,
    F_TOMBSTONE,
)

NS_GENERATION = "gen"
TAG_FIELD_PREFIX = "t:"


def entry(ns: str, key: str) -> bytes:
    return f"{PREFIX}:e:{{{ns}/{key}}}".encode()


def lease(ns: str, key: str) -> bytes:
    return f"{PREFIX}:l:{{{ns}/{key}}}".encode()


def namespace_meta(ns: str) -> bytes:
    return f"{PREFIX}:n:{{{ns}}}".encode()


def digest(ns: str) -> bytes:
    return f"{PREFIX}:dg:{{{ns}}}".encode()


def index_prefix(ns: str) -> str:
    """Prefix of the namespace's applied-version index hashes (one per leaf)."""
    return f"{PREFIX}:ix:{{{ns}}}:"


def index(ns: str, leaf: str) -> bytes:
    return f"{index_prefix(ns)}{leaf}".encode()


def leaf_of(key: str) -> str:
    """The digest leaf of a key: the first 4 hex digits of its SHA-1 (65,536 leaves),
    as the Lua scripts compute it."""
    return hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:4]


def tag_field(tag: str) -> str:
    return TAG_FIELD_PREFIX + tag


def outbox(region: str) -> bytes:
    return f"{PREFIX}:outbox:{{{region}}}".encode()


def outbox_lock(region: str) -> bytes:
    return f"{PREFIX}:outbox-lock:{{{region}}}".encode()
