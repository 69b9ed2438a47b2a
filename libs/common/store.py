"""A region's Redis as mrcache sees it: versioned entries and namespace metadata.

An entry is served only when it is *valid*: not a tombstone, not past its soft
expiry, stamped with the namespace's current generation and with the current
version of each of its tags. Invalidating a namespace or a tag therefore
touches one field, whatever the number of entries (architecture.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from redis.asyncio import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, OutOfMemoryError, RedisError, ResponseError

from libs.common import keys
from libs.common.errors import (
    ClientError,
    InvalidRequest,
    PreconditionFailed,
    StaleVersion,
    StoreOutOfMemory,
    StoreUnavailable,
    VersionExhausted,
)
from libs.common.redisclient import RedisClient
from libs.common.scripts import Scripts
from libs.common.versions import MAX_VERSION

log = logging.getLogger(__name__)


class Lookup(Enum):
    HIT = "hit"
    ABSENT = "absent"  # nothing held at all
    TOMBSTONE = "tombstone"  # deleted, version kept
    SUPERSEDED = "superseded"  # a newer version exists elsewhere; no copy here
    NEGATIVE = "negative"  # the origin answered 404 recently
    INVALIDATED = "invalidated"  # older namespace generation or tag version
    EXPIRED = "expired"  # past its soft TTL, still held for stale serving


@dataclass(frozen=True, slots=True)
class Entry:
    value: bytes
    content_type: str
    version: int
    written_ms: int
    expires_ms: int
    tags: tuple[str, ...]
    # the stamps it was written under: namespace generation and its tags' versions
    generation: int = 0
    tag_versions: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ReadResult:
    lookup: Lookup
    # the raw version held (value or tombstone, valid or not); 0 when nothing is held
    held_version: int
    entry: Entry | None = None
    # a tombstone's or remembered 404's namespace generation (0 when it has none)
    generation: int = 0


@dataclass(frozen=True, slots=True)
class WriteResult:
    version: int
    written_ms: int
    expires_ms: int
    generation: int = 0
    tag_versions: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Change:
    """One versioned change (a tombstone, a copy, a bump), built before it is run so that
    many can share a round trip (:meth:`RegionStore.run_many`)."""

    script: AsyncScript
    keys: list[bytes]
    args: list[Any]
    ns: str
    # the key's leaf (its bucket goes into the reconciler's registry); None for metadata
    leaf: str | None
    # what the error messages name
    subject: str
    invalid: str


# what one change of run_many came to: (applied, version held), or why not
Outcome = tuple[bool, int] | ClientError | StoreOutOfMemory
# the namespace generation and tag versions an entry is written under
Stamps = tuple[int, tuple[int, ...]]

_ABSENT = ReadResult(Lookup.ABSENT, 0)
# (ns, bucket) pairs a process remembers having registered (4,096 buckets a namespace;
# about 10 MB): past it the memory starts over, costing only repeated SADDs
_REGISTERED_MAX = 65_536
_TOMBSTONES = {b"m": Lookup.SUPERSEDED, b"n": Lookup.NEGATIVE}
# slots a batch of changes runs on at once on a cluster (each takes a connection)
_CLUSTER_FANOUT = 32


class RegionStore:
    """Reads and versioned writes on one region's Redis (standalone or a cluster)."""

    def __init__(self, redis: RedisClient, *, tombstone_ttl: float) -> None:
        self.redis = redis
        # (ns, bucket) this process has entered in the reconciler's registries
        self._registered: set[tuple[str, str]] = set()
        self.scripts = Scripts(redis)
        self.tombstone_ms = int(tombstone_ttl * 1000)

    # -- reads ---------------------------------------------------------------

    async def read(self, ns: str, key: str) -> ReadResult:
        try:
            fields, gen = await self._two(
                ("HMGET", keys.entry(ns, key), *keys.ENTRY_FIELDS),
                ("HGET", keys.namespace_meta(ns), keys.NS_GENERATION),
            )
            result = _judge(fields, gen)
            # stale copies too: an expired copy served while it revalidates obeys its tags
            if result.entry is not None and result.entry.tags:
                current = await self.redis.hmget(
                    keys.namespace_meta(ns), [keys.tag_field(t) for t in result.entry.tags]
                )
                result = _judge_tags(result, fields, current)
        except RedisError as exc:
            raise _unavailable(exc) from None
        return result

    async def _two(self, first: tuple[Any, ...], second: tuple[Any, ...]) -> tuple[Any, Any]:
        """Two commands in one round trip on one pooled connection (on a cluster: at
        once, each on its slot's node).

        The entry and its namespace meta live in different hash slots, so no script
        may read both; redis-py's Pipeline object would cost a third of a hit's
        Redis time, so the two commands are packed by hand.
        """
        if isinstance(self.redis, RedisCluster):
            both = await asyncio.gather(
                self.redis.execute_command(*first), self.redis.execute_command(*second)
            )
            return both[0], both[1]
        replies = await self._send_all(_pack((first, second)), 2)
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        return replies[0], replies[1]

    async def read_many(self, ns: str, key_list: Sequence[str]) -> list[ReadResult]:
        """Read up to a batch of keys in one round trip (plus one for tagged hits)."""
        meta = keys.namespace_meta(ns)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hget(meta, keys.NS_GENERATION)
                for key in key_list:
                    pipe.hmget(keys.entry(ns, key), keys.ENTRY_FIELDS)
                replies = await pipe.execute()
            gen = replies[0]
            results = [_judge(fields, gen) for fields in replies[1:]]
            tagged = sorted({t for r in results if r.entry for t in r.entry.tags})
            if tagged:
                current = await self.redis.hmget(meta, [keys.tag_field(t) for t in tagged])
                versions = dict(zip(tagged, current, strict=True))
                results = [
                    _judge_tags(r, fields, [versions[t] for t in r.entry.tags])
                    if r.entry and r.entry.tags
                    else r
                    for r, fields in zip(results, replies[1:], strict=True)
                ]
        except RedisError as exc:
            raise _unavailable(exc) from None
        return results

    # -- writes --------------------------------------------------------------

    async def write(
        self,
        ns: str,
        key: str,
        value: bytes,
        *,
        content_type: str,
        ttl: float,
        tags: tuple[str, ...] = (),
        external_version: int | None = None,
        expect_version: int | None = None,
        keep_after_expiry: float = 0.0,
        stamps: Stamps | None = None,
    ) -> WriteResult:
        """Versioned set. ``expect_version`` is the raw version that must still be held
        (compare-and-set; 0 = nothing held); ``external_version`` must be newer than it.
        ``stamps`` are the namespace generation and tag versions to write under, from the
        region that assigns them; by default this region's (:meth:`stamps`), which a
        standalone Redis reads inside the write itself (one round trip, not two).
        """
        cluster = isinstance(self.redis, RedisCluster)
        if stamps is None and cluster:
            stamps = await self.stamps(ns, tags)
        script_keys, leaf = keys.entry_script_keys(ns, key)
        if stamps is None:
            script_keys = [*script_keys, keys.namespace_meta(ns)]
        args: list[Any] = [
            value,
            content_type,
            max(1, int(ttl * 1000)),
            int(keep_after_expiry * 1000),
            "" if stamps is None else stamps[0],
            ",".join(tags),
            "" if stamps is None else ",".join(str(v) for v in stamps[1]),
            "" if external_version is None else external_version,
            "" if expect_version is None else expect_version,
            key,
            leaf,
        ]
        try:
            if cluster:
                reply = await self.scripts.set(keys=script_keys, args=args)
            else:
                change = Change(self.scripts.set, script_keys, args, ns, leaf, "", "")
                reply = (await self._run_pipelined([change]))[0]
                if isinstance(reply, Exception):
                    raise reply if isinstance(reply, RedisError) else RedisError(repr(reply))
        except RedisError as exc:
            raise _unavailable(exc) from None
        await self._register(ns, leaf)
        if reply[0] == 1:
            gen, tag_versions = int(reply[4]), tuple(int(v) for v in reply[5].split(b",") if v)
            return WriteResult(int(reply[1]), int(reply[2]), int(reply[3]), gen, tag_versions)
        current = int(reply[2])
        if reply[1] == b"stale":
            raise StaleVersion(
                f"version {external_version} is not newer than the held version {current}",
                current_version=current,
            )
        if reply[1] == b"exhausted":
            raise _exhausted(f"{ns}/{key}", current)
        if reply[1] == b"invalid":
            raise InvalidRequest("a TTL, expiry or version is out of range")
        raise PreconditionFailed("the entry changed or exists", current_version=current)

    async def tombstone(
        self,
        ns: str,
        key: str,
        version: int | None = None,
        *,
        superseded: bool = False,
        generation: int | None = None,
    ) -> tuple[bool, int]:
        """Replace the entry by a tombstone; returns (applied, version held afterwards).

        ``superseded`` marks "version N exists elsewhere" (an event in invalidate
        mode) rather than a delete: a read then fills from the home region. A deletion
        made under namespace ``generation`` stops counting once the namespace is
        invalidated after it (None: it never does).
        """
        change = self.tombstone_change(
            ns, key, version, superseded=superseded, generation=generation
        )
        return await self._run(change)

    def tombstone_change(
        self,
        ns: str,
        key: str,
        version: int | None = None,
        *,
        superseded: bool = False,
        generation: int | None = None,
    ) -> Change:
        """:meth:`tombstone` as a :class:`Change`, for :meth:`run_many`."""
        script_keys, leaf = keys.entry_script_keys(ns, key)
        args: list[Any] = [
            self.tombstone_ms,
            "" if version is None else version,
            "m" if superseded else "1",
            key,
            leaf,
            "" if generation is None or superseded else generation,
        ]
        return Change(
            self.scripts.tombstone,
            script_keys,
            args,
            ns,
            leaf,
            f"{ns}/{key}",
            "a tombstone's version or lifetime is out of range",
        )

    async def fill(
        self,
        ns: str,
        key: str,
        entry: Entry,
        *,
        keep_after_expiry: float = 0.0,
    ) -> tuple[bool, int]:
        """Install a copy made elsewhere unless something newer is known here.

        Returns (installed, version held afterwards). The entry keeps its own
        stamps, so an invalidation that reached this region first still voids it.
        """
        change = self.fill_change(ns, key, entry, keep_after_expiry=keep_after_expiry)
        return await self._run(change)

    def fill_change(
        self, ns: str, key: str, entry: Entry, *, keep_after_expiry: float = 0.0
    ) -> Change:
        """:meth:`fill` as a :class:`Change`, for :meth:`run_many`."""
        _check_entry(entry, keep_after_expiry)
        script_keys, leaf = keys.entry_script_keys(ns, key)
        args: list[Any] = [
            entry.value,
            entry.content_type,
            entry.version,
            entry.written_ms,
            entry.expires_ms,
            int(keep_after_expiry * 1000),
            entry.generation,
            ",".join(entry.tags),
            ",".join(str(v) for v in entry.tag_versions),
            key,
            leaf,
        ]
        return Change(
            self.scripts.fill,
            script_keys,
            args,
            ns,
            leaf,
            f"{ns}/{key}",
            "a copy's version, expiry or stamps are out of range",
        )

    async def acquire_lease(self, ns: str, key: str, token: str, ttl: float) -> bool:
        """Take the entry's lease: the one origin fill of the key in this region."""
        try:
            taken = await self.redis.set(
                keys.lease(ns, key), token, nx=True, px=max(1, int(ttl * 1000))
            )
        except RedisError as exc:
            raise _unavailable(exc) from None
        return bool(taken)

    async def release_lease(self, ns: str, key: str, token: str) -> None:
        try:
            await self.scripts.release(keys=[keys.lease(ns, key)], args=[token])
        except RedisError as exc:
            raise _unavailable(exc) from None

    async def origin_fill(
        self,
        ns: str,
        key: str,
        token: str,
        *,
        value: bytes | None,
        content_type: str,
        version: int | None,
        ttl: float,
        generation: int,
        keep_after_expiry: float = 0.0,
        source_versions: bool = False,
    ) -> WriteResult | None:
        """Install an origin's answer (``value=None`` for a 404: a negative entry of
        ``ttl``) if this fill still holds the lease; ``None`` when it was revoked or
        something newer is held. With ``source_versions`` (a system of record assigns
        the namespace's versions) an answer without a version is installed at the
        version known here, never above it. Raises :class:`VersionExhausted` when the
        key's version can grow no more."""
        try:
            script_keys, leaf = keys.entry_script_keys(ns, key)
            reply = await self.scripts.origin_fill(
                keys=script_keys,
                args=[
                    token,
                    value or b"",
                    content_type,
                    "" if version is None else version,
                    max(1, int(ttl * 1000)),
                    int(keep_after_expiry * 1000),
                    generation,
                    key,
                    leaf,
                    "1" if value is None else "",
                    "source" if source_versions else "",
                ],
            )
        except RedisError as exc:
            raise _unavailable(exc) from None
        if reply[0] != 1:
            if reply[1] == b"exhausted":
                raise _exhausted(f"{ns}/{key}", int(reply[2]))
            if reply[1] == b"invalid":
                raise InvalidRequest("an origin answer's TTL or version is out of range")
            return None
        await self._register(ns, leaf)
        return WriteResult(int(reply[1]), int(reply[2]), int(reply[3]), generation)

    async def stamps(self, ns: str, tags: tuple[str, ...], *, clock: bool = True) -> Stamps:
        """The namespace generation and tag versions to write under, from this region.

        With ``clock`` (what an entry is written under) each is at least this Redis's
        clock: newer than everything it assigned before, older than everything it will
        assign (stamp.lua), so stamps never go backwards when the metadata is lost.
        Without it, the stored values alone (a tombstone's generation)."""
        try:
            reply = await self.scripts.stamp(
                keys=[keys.namespace_meta(ns)], args=["1" if clock else "", *tags]
            )
        except RedisError as exc:
            raise _unavailable(exc) from None
        return int(reply[0]), tuple(int(v) for v in reply[1:])

    async def bump_namespace(self, ns: str, version: int | None = None) -> tuple[bool, int]:
        return await self._run(self.bump_change(ns, None, version))

    async def bump_tag(self, ns: str, tag: str, version: int | None = None) -> tuple[bool, int]:
        return await self._run(self.bump_change(ns, tag, version))

    def bump_change(self, ns: str, tag: str | None, version: int | None = None) -> Change:
        """Raising the namespace generation (``tag`` None) or a tag's version, as a
        :class:`Change`."""
        field = keys.NS_GENERATION if tag is None else keys.tag_field(tag)
        return Change(
            self.scripts.bump,
            [keys.namespace_meta(ns)],
            [field, "" if version is None else version],
            ns,
            None,
            f"{field} of {ns}",
            f"version {version} of {field} is out of range",
        )

    # -- versioned changes, one at a time or many in one round trip -------------

    async def _run(self, change: Change) -> tuple[bool, int]:
        try:
            reply = await change.script(keys=change.keys, args=change.args)
        except RedisError as exc:
            raise _unavailable(exc) from None
        result = _outcome(change, reply)
        await self._register(change.ns, change.leaf)
        return result

    async def run_many(self, changes: Sequence[Change]) -> list[Outcome]:
        """Run ``changes`` in order, in one round trip on a standalone Redis. Each gets its
        (applied, version held) or the :class:`ClientError` its numbers earned, or
        :class:`StoreOutOfMemory` if Redis refused it whole for lack of memory; any other
        failure raises :class:`StoreUnavailable` for all of them, and since every change
        is idempotent by version the caller runs them all again.

        redis-py refuses scripts in a cluster pipeline, so on a cluster the changes of
        each hash slot run one after another (their order holds: an entry's keys share
        its slot) and the slots at once, ``_CLUSTER_FANOUT`` at a time."""
        if not changes:
            return []
        if isinstance(self.redis, RedisCluster):
            replies = await self._run_on_cluster(changes)
        else:
            replies = await self._run_pipelined(changes)
        results: list[Outcome] = []
        for change, reply in zip(changes, replies, strict=True):
            if isinstance(reply, OutOfMemoryError):
                results.append(_full())
                continue
            if isinstance(reply, Exception):
                raise _unavailable(
                    reply if isinstance(reply, RedisError) else RedisError(repr(reply))
                )
            try:
                results.append(_outcome(change, reply))
            except ClientError as exc:
                results.append(exc)
        await self._register_many([(c.ns, c.leaf) for c in changes])
        return results

    async def _run_pipelined(self, changes: Sequence[Change]) -> list[Any]:
        replies: list[Any] = []
        for attempt in range(2):
            try:
                replies = await self._send_all(_pack_evalsha(changes), len(changes))
            except RedisError as exc:
                raise _unavailable(exc) from None
            if attempt or not any(isinstance(r, NoScriptError) for r in replies):
                break
            # a restarted or new server has no scripts yet: load them and run all again
            try:
                for script in {id(c.script): c.script for c in changes}.values():
                    await self.redis.script_load(script.script)
            except RedisError as exc:
                raise _unavailable(exc) from None
        return replies

    async def _send_all(self, packed: bytes, count: int) -> list[Any]:
        """Send commands packed by hand on one pooled connection and read their ``count``
        replies, an error reply as its exception. redis-py's Pipeline object costs a
        relay more CPU per event than the script it runs (queueing, packing, callbacks)."""
        assert not isinstance(self.redis, RedisCluster)
        pool = self.redis.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        replies: list[Any] = []
        try:
            await conn.send_packed_command(packed)
            for _ in range(count):
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:  # read whole: the connection stays usable
                    replies.append(exc)
        except BaseException:
            # replies may still be unread: never hand this connection to someone else
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)
        return replies

    async def _run_on_cluster(self, changes: Sequence[Change]) -> list[Any]:
        assert isinstance(self.redis, RedisCluster)
        slots: dict[int, list[int]] = {}
        for i, change in enumerate(changes):
            slots.setdefault(self.redis.keyslot(change.keys[0]), []).append(i)
        replies: list[Any] = [None] * len(changes)
        fanout = asyncio.Semaphore(_CLUSTER_FANOUT)

        async def run_slot(positions: list[int]) -> None:
            async with fanout:
                for i in positions:
                    change = changes[i]
                    try:  # the script object reloads itself on NOSCRIPT
                        replies[i] = await change.script(keys=change.keys, args=change.args)
                    except OutOfMemoryError as exc:
                        replies[i] = exc
                    except RedisError as exc:
                        raise _unavailable(exc) from None

        await asyncio.gather(*(run_slot(p) for p in slots.values()))
        return replies

    async def _register(self, ns: str, leaf: str | None) -> None:
        await self._register_many([(ns, leaf)])

    async def _register_many(self, changed: Sequence[tuple[str, str | None]]) -> None:
        """Enter each namespace, and the bucket of each ``leaf`` (which now has a digest),
        in the registries the reconciler reads instead of scanning every key; once per
        process (the SADDs are idempotent), in one round trip for a batch. They live
        outside the entries' hash slots, so they follow the scripts rather than run inside
        them; a crash in between leaves a bucket unregistered here, which the other
        regions' registries and the reconciler's occasional full scan make up for."""
        new: dict[tuple[str, str], None] = {}
        for ns, leaf in changed:
            pair = (ns, leaf[: keys.BUCKET_DIGITS] if leaf is not None else "")
            if pair not in self._registered:
                new[pair] = None
        if not new:
            return
        buckets: dict[str, list[str]] = {}
        for ns, bucket in new:
            buckets.setdefault(ns, [])
            if bucket:
                buckets[ns].append(bucket)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for ns, names in buckets.items():
                    if names:
                        pipe.sadd(keys.buckets(ns), *names)
                pipe.sadd(keys.NAMESPACES, *buckets)
                await pipe.execute()
        except RedisError as exc:  # the changes themselves are applied; register next time
            log.info("could not register %d buckets for the reconciler: %r", len(new), exc)
            return
        if len(self._registered) + len(new) > _REGISTERED_MAX:
            self._registered.clear()
        self._registered.update(new)

    # -- administration --------------------------------------------------------

    async def ping(self) -> None:
        try:
            await self.redis.ping()
        except RedisError as exc:
            raise _unavailable(exc) from None

    async def apply_eviction(self, policy: str | None, maxmemory: int | None) -> None:
        """Set ``volatile-<policy>`` and ``maxmemory`` (on every node of a cluster, so a
        promoted replica keeps them); managed Redis may refuse CONFIG.

        Every entry and tombstone carries a TTL while namespace metadata and the
        outbox carry none, so ``volatile-*`` evicts exactly the cache entries.
        ``allkeys-*`` would also evict a namespace's meta hash, and since Redis's
        LRU clock ticks once a second even a hash read on every request goes,
        which (safely, but needlessly) voids every entry of the namespace.
        """
        settings: list[tuple[str, str]] = []
        if policy is not None:
            settings.append(("maxmemory-policy", redis_policy(policy)))
        if maxmemory is not None:
            settings.append(("maxmemory", str(maxmemory)))
        try:
            for name, value in settings:
                if isinstance(self.redis, RedisCluster):
                    await self.redis.config_set(name, value, target_nodes=RedisCluster.ALL_NODES)
                else:
                    await self.redis.config_set(name, value)
        except ResponseError as exc:
            log.warning("redis refused eviction settings (managed Redis?): %s", exc)

    async def memory_info(self) -> dict[str, Any]:
        """Eviction policy and memory of the region's Redis (summed over a cluster's
        primaries)."""
        extra: dict[str, Any] = {}
        try:
            if isinstance(self.redis, RedisCluster):
                per_node = await self.redis.info("memory", target_nodes=RedisCluster.PRIMARIES)
                nodes = list(per_node.values())
                extra["cluster_primaries"] = len(nodes)
            else:
                nodes = [await self.redis.info("memory")]
        except RedisError as exc:
            raise _unavailable(exc) from None
        return {
            "maxmemory_policy": nodes[0].get("maxmemory_policy") if nodes else None,
            "maxmemory": sum(int(n.get("maxmemory", 0)) for n in nodes),
            "used_memory": sum(int(n.get("used_memory", 0)) for n in nodes),
            **extra,
        }


def redis_policy(policy: str) -> str:
    """The Redis ``maxmemory-policy`` for mrcache's ``eviction = "lru" | "lfu"``."""
    return f"volatile-{policy}"


def judge(
    fields: list[bytes | None], gen: bytes | None, tag_versions: Sequence[Any] | None = None
) -> ReadResult:
    """What an entry's raw fields (HMGET of :data:`keys.ENTRY_FIELDS`) mean, given the
    namespace generation and, for a tagged entry, its tags' current versions."""
    result = _judge(fields, gen)
    if tag_versions is not None and result.entry is not None:
        result = _judge_tags(result, fields, tag_versions)
    return result


def _judge(fields: list[bytes | None], gen: bytes | None) -> ReadResult:
    value, ctype, ver, written, expires, egen, tags, tag_versions, tomb = fields
    if ver is None:
        return _ABSENT
    held = int(ver)
    if tomb is not None:
        kind = _TOMBSTONES.get(tomb, Lookup.TOMBSTONE)
        # a deletion or a remembered 404 made before the namespace's latest invalidation
        # goes with it: the key may be filled again (its version still orders fills)
        stamped = egen is not None and gen is not None and kind is not Lookup.SUPERSEDED
        if stamped and int(egen) < int(gen):  # type: ignore[arg-type]
            return ReadResult(Lookup.INVALIDATED, held)
        return ReadResult(kind, held, generation=int(egen) if egen else 0)
    if value is None or written is None or expires is None or egen is None:
        return ReadResult(Lookup.ABSENT, held)  # a partial hash: evicted mid-way, never served
    # no generation: the namespace was never invalidated here (meta is never evicted,
    # see apply_eviction)
    if gen is not None and int(egen) < int(gen):
        return ReadResult(Lookup.INVALIDATED, held)
    entry = Entry(
        value=value,
        content_type=ctype.decode() if ctype else "application/octet-stream",
        version=held,
        written_ms=int(written),
        expires_ms=int(expires),
        tags=tuple(tags.decode().split(",")) if tags else (),
        generation=int(egen),
        tag_versions=tuple(int(v) for v in tag_versions.split(b",")) if tag_versions else (),
    )
    if entry.expires_ms <= time.time() * 1000:
        return ReadResult(Lookup.EXPIRED, held, entry)
    return ReadResult(Lookup.HIT, held, entry)


def _judge_tags(
    result: ReadResult, fields: list[bytes | None], current: Sequence[Any]
) -> ReadResult:
    stamped = fields[7].split(b",") if fields[7] else []
    for at_write, now in zip(stamped, current, strict=False):
        if now is not None and int(now) > int(at_write):
            return ReadResult(Lookup.INVALIDATED, result.held_version)
    return result


def _check_entry(entry: Entry, keep_after_expiry: float) -> None:
    """A copy's numbers within what the scripts accept, before anything is sent."""
    numbers = (entry.version, entry.written_ms, entry.expires_ms, entry.generation)
    if not all(0 <= n <= MAX_VERSION for n in numbers) or not all(
        0 <= v <= MAX_VERSION for v in entry.tag_versions
    ):
        raise InvalidRequest("a copy's version, times or stamps are out of range")
    if entry.expires_ms + keep_after_expiry * 1000 > MAX_VERSION:
        raise InvalidRequest("a copy's expiry is out of range")


def _pack(commands: Iterable[Sequence[Any]]) -> bytes:
    """``commands`` in the Redis protocol (RESP), one buffer: bytes as they are, anything
    else as its text in UTF-8."""
    out: list[bytes] = []
    for command in commands:
        out.append(b"*%d\r\n" % len(command))
        for arg in command:
            raw = arg if isinstance(arg, bytes) else str(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


def _pack_evalsha(changes: Sequence[Change]) -> bytes:
    """The EVALSHA commands of ``changes``, one buffer."""
    return _pack(
        (b"EVALSHA", change.script.sha, len(change.keys), *change.keys, *change.args)
        for change in changes
    )


def _outcome(change: Change, reply: list[Any]) -> tuple[bool, int]:
    """(applied, version held) from a versioned script's reply: ``{1, version}``, or
    ``{0, current}`` when it was not newer, or ``{0, current, 'exhausted'|'invalid'}``."""
    if reply[0] != 1 and len(reply) > 2:
        if reply[2] == b"exhausted":
            raise _exhausted(change.subject, int(reply[1]))
        raise InvalidRequest(change.invalid)
    return reply[0] == 1, int(reply[1])


def _exhausted(what: str, current: int) -> VersionExhausted:
    return VersionExhausted(
        f"{what} is at version {current}, the largest a version can be (2^53 - 1): "
        "nothing newer can be written",
        current_version=current,
    )


def _full() -> StoreOutOfMemory:
    return StoreOutOfMemory("region store full: Redis is at maxmemory")


def _unavailable(exc: RedisError) -> StoreUnavailable:
    if isinstance(exc, OutOfMemoryError):
        return _full()
    return StoreUnavailable(f"region store unavailable: {type(exc).__name__}")
