"""The whole Redis key schema of a region, in one place.

Every key a Lua script touches for one cache entry (the entry, its lease, the
applied-version index of its leaf and its bucket's digest) carries the same
hash tag ``{<ns>:<bucket>}``, so each script stays inside one Redis Cluster
hash slot. A key's *leaf* is the first 4 hex digits of ``sha1(key)`` (65,536
per namespace, what the reconciler digests); its *bucket* is the leaf's first
3 digits (4,096 per namespace), so a namespace's entries spread over the
cluster while a bucket's entries, index and digest share a slot. Namespace
metadata (generation and tag versions) lives in one hash per namespace under
its own tag, read with plain commands next to the entry, never inside a
cross-slot script. The outbox and its lock share the region's tag.

=====================================  =====  ========================================
key                                    type   holds
=====================================  =====  ========================================
``mrc:e:{<ns>:<bucket>}:<key>``        hash   one entry: value or tombstone (fields below)
``mrc:l:{<ns>:<bucket>}:<key>``        str    lease token of the one origin fill in flight
                                              (revoked by every change of the entry)
``mrc:ix:{<ns>:<bucket>}:<leaf>``      hash   applied version of every key of the leaf
                                              (never evicted)
``mrc:dg:{<ns>:<bucket>}``             hash   per leaf of the bucket: sum of
                                              h(key, applied version) mod 2^48
``mrc:n:{<ns>}``                       hash   ``gen`` (namespace generation), ``t:<tag>``
                                              (tag versions); absent = never invalidated
``mrc:bk:{<ns>}``                      set    the namespace's buckets that have digests
``mrc:namespaces``                     set    every namespace this region applied anything of
                                              (both registries, for the reconciler, are
                                              kept by the store after its scripts)
``mrc:hot:{<region>}``                 zset   the region's hottest keys (``<ns>/<key>``),
                                              decaying read counts from the samplers
``mrc:hot-decay:{<region>}``           str    held by the process that last halved them
``mrc:outbox:{<region>}``              list   encoded events waiting for Kafka, oldest first
``mrc:outbox-lock:{<region>}``         str    token of the process draining the outbox
=====================================  =====  ========================================

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


# hex digits of sha1(key) naming its leaf, and the leading ones naming its bucket
LEAF_DIGITS = 4
BUCKET_DIGITS = 3


def leaf_of(key: str) -> str:
    """The digest leaf of a key: the first 4 hex digits of its SHA-1 (65,536 leaves)."""
    return hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:LEAF_DIGITS]


def _tag(ns: str, leaf: str) -> str:
    return f"{{{ns}:{leaf[:BUCKET_DIGITS]}}}"


def entry(ns: str, key: str, leaf: str | None = None) -> bytes:
    return f"{PREFIX}:e:{_tag(ns, leaf or leaf_of(key))}:{key}".encode()


def lease(ns: str, key: str, leaf: str | None = None) -> bytes:
    return f"{PREFIX}:l:{_tag(ns, leaf or leaf_of(key))}:{key}".encode()


def index(ns: str, leaf: str) -> bytes:
    """The applied-version index of one leaf (key -> version)."""
    return f"{PREFIX}:ix:{_tag(ns, leaf)}:{leaf}".encode()


def digest(ns: str, bucket: str) -> bytes:
    """The leaf digests of one bucket (leaf -> digest)."""
    return f"{PREFIX}:dg:{{{ns}:{bucket}}}".encode()


# what a SCAN for digests and namespace metas matches (parse_digest / parse_meta sort it)
INVENTORY_PATTERN = f"{PREFIX}:[dn]*"


def parse_digest(name: str) -> tuple[str, str] | None:
    """(namespace, bucket) of a digest key's name, ``None`` for anything else."""
    head = f"{PREFIX}:dg:{{"
    if not (name.startswith(head) and name.endswith("}")):
        return None
    ns, _, bucket = name[len(head) : -1].rpartition(":")
    return (ns, bucket) if ns and len(bucket) == BUCKET_DIGITS else None


def parse_meta(name: str) -> str | None:
    """The namespace of a namespace-meta key's name."""
    head = f"{PREFIX}:n:{{"
    if name.startswith(head) and name.endswith("}") and len(name) > len(head) + 1:
        return name[len(head) : -1]
    return None


def entry_script_keys(ns: str, key: str) -> tuple[list[bytes], str]:
    """KEYS of every script that changes an entry (entry, bucket digest, lease, leaf
    index: one hash slot), and the key's leaf."""
    leaf = leaf_of(key)
    return [
        entry(ns, key, leaf),
        digest(ns, leaf[:BUCKET_DIGITS]),
        lease(ns, key, leaf),
        index(ns, leaf),
    ], leaf


def namespace_meta(ns: str) -> bytes:
    return f"{PREFIX}:n:{{{ns}}}".encode()


def buckets(ns: str) -> bytes:
    """The set of the namespace's buckets that have digests."""
    return f"{PREFIX}:bk:{{{ns}}}".encode()


NAMESPACES = f"{PREFIX}:namespaces".encode()


def hot(region: str) -> bytes:
    return f"{PREFIX}:hot:{{{region}}}".encode()


def hot_decay(region: str) -> bytes:
    return f"{PREFIX}:hot-decay:{{{region}}}".encode()


def tag_field(tag: str) -> str:
    return TAG_FIELD_PREFIX + tag


def outbox(region: str) -> bytes:
    return f"{PREFIX}:outbox:{{{region}}}".encode()


def outbox_lock(region: str) -> bytes:
    return f"{PREFIX}:outbox-lock:{{{region}}}".encode()
