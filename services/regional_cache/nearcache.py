"""A small per-process cache of the region's hottest entries, kept honest by Redis.

A key that :class:`~libs.common.hotkeys.HotKeys` finds hot is loaded into this
process over a *tracking* connection (``CLIENT TRACKING ON REDIRECT``): Redis
remembers that the connection read the entry and its namespace's metadata, and
when either changes (a write, a delete, an event a relay applies, a namespace
or tag invalidation, expiry, eviction, a slot migrating away) it pushes the key
name to this process's subscriber connection, which drops the copy. Those are
the same invalidations every other read obeys, delivered in about a millisecond.

Two bounds hold whatever happens to those messages: a copy is served for at
most ``staleness_ms`` after it was loaded (then it is loaded again), and when a
subscriber connection breaks every copy is dropped. A load that overlaps any
invalidation message is discarded rather than installed, so a copy can never
outlive a change it raced. A read with ``min_version`` above a copy's version
goes to Redis as usual. On a Redis Cluster each node has its own pair of
connections; the entry and its namespace metadata are tracked on their nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot
from redis.exceptions import RedisError

from libs.common import keys
from libs.common.metrics import Metrics
from libs.common.redisclient import RedisClient
from libs.common.store import Entry, Lookup, judge

log = logging.getLogger(__name__)

_INVALIDATE = b"__redis__:invalidate"
# after a broken tracking connection, how long before the next attempt
_RETRY_SECONDS = 1.0
# share of the staleness bound after which a served copy is reloaded in the background
_REFRESH_AT = 0.5


class _Tracker:
    """The tracking pair of one Redis node: a reader whose reads Redis tracks, and the
    subscriber Redis pushes the invalidations of those reads to."""

    def __init__(
        self,
        make_connection: Callable[..., AbstractConnection],
        on_keys: Callable[[list[bytes]], None],
        on_lost: Callable[[], None],
    ) -> None:
        self._make = make_connection
        self._on_keys = on_keys
        self._on_lost = on_lost
        self._reader: AbstractConnection | None = None
        self._subscriber: AbstractConnection | None = None
        self._listener: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._broken_until = 0.0

    async def command(self, *args: Any) -> Any:
        (reply,) = await self.commands(args)
        return reply

    async def commands(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Tracked reads on this node in one round trip (one batch at a time: replies pair
        with commands)."""
        async with self._lock:
            if self._reader is None:
                if time.monotonic() < self._broken_until:
                    raise ConnectionError("tracking connection recently broken")
                await self._connect()
            assert self._reader is not None
            try:
                await self._reader.send_packed_command(self._reader.pack_commands(commands))
                replies = [await self._reader.read_response() for _ in commands]
            except (RedisError, OSError, RuntimeError):
                await self._close()
                raise
        for reply in replies:
            if isinstance(reply, RedisError):
                raise reply
        return replies

    async def _connect(self) -> None:
        # RESP2 on both: the invalidations then arrive as plain pub/sub messages on the
        # subscriber (RESP3 would hand them to the client library's push handlers)
        subscriber = self._make(socket_timeout=None, protocol=2)
        reader = self._make(protocol=2)
        try:
            await subscriber.connect()  # type: ignore[no-untyped-call]
            await subscriber.send_command("CLIENT", "ID")
            client_id = await subscriber.read_response()
            await subscriber.send_command("SUBSCRIBE", _INVALIDATE)
            await subscriber.read_response()
            await reader.connect()  # type: ignore[no-untyped-call]
            await reader.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", client_id)
            if await reader.read_response() not in (b"OK", "OK"):
                raise ConnectionError("CLIENT TRACKING refused")
        except BaseException:
            await subscriber.disconnect()
            await reader.disconnect()
            self._broken_until = time.monotonic() + _RETRY_SECONDS
            raise
        self._subscriber, self._reader = subscriber, reader
        self._listener = asyncio.create_task(self._listen(subscriber))

    async def _listen(self, subscriber: AbstractConnection) -> None:
        try:
            while True:
                message = await subscriber.read_response()
                if isinstance(message, list) and len(message) == 3 and message[0] == b"message":
                    payload = message[2]
                    # None: Redis flushed its tracking table (FLUSHALL, or it was full)
                    if isinstance(payload, list):
                        self._on_keys(payload)
                    else:
                        self._on_lost()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the connection broke: nothing cached here is vouched for
            log.info("near cache: tracking subscriber lost (%r); dropping its copies", exc)
            self._on_lost()
            self._broken_until = time.monotonic() + _RETRY_SECONDS
            self._subscriber = None
            reader, self._reader = self._reader, None
            if reader is not None:
                await reader.disconnect()
            await subscriber.disconnect()

    async def _close(self) -> None:
        self._on_lost()
        self._broken_until = time.monotonic() + _RETRY_SECONDS
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener
        for conn in (self._reader, self._subscriber):
            if conn is not None:
                await conn.disconnect()
        self._reader = self._subscriber = None

    async def stop(self) -> None:
        async with self._lock:
            await self._close()


@dataclass(slots=True)
class _Copy:
    entry: Entry
    loaded_at: float
    entry_key: bytes
    meta_key: bytes


class NearCache:
    """Copies of hot entries in this process; ``start()``/``stop()`` own its connections
    and loads."""

    def __init__(
        self,
        redis: RedisClient,
        metrics: Metrics,
        region: str,
        *,
        staleness_ms: float,
        max_entries: int,
        max_value_bytes: int,
    ) -> None:
        self.redis = redis
        self.staleness = staleness_ms / 1000
        self.max_entries = max_entries
        self.max_value_bytes = max_value_bytes
        self._copies: OrderedDict[tuple[str, str], _Copy] = OrderedDict()
        self._by_entry_key: dict[bytes, tuple[str, str]] = {}
        self._by_meta_key: dict[bytes, set[tuple[str, str]]] = {}
        self._trackers: dict[str, _Tracker] = {}
        self._loads: dict[tuple[str, str], asyncio.Task[None]] = {}
        # bumped by every invalidation: a load that saw it change is not installed
        self._epoch = 0
        self._hits = metrics.near_cache_results.labels(region, "hit")
        self._misses = metrics.near_cache_results.labels(region, "miss")
        self._expired = metrics.near_cache_results.labels(region, "expired")
        self._dropped = metrics.near_cache_invalidations.labels(region)
        self._size = metrics.near_cache_entries.labels(region)

    # -- the read path ---------------------------------------------------------

    def get(self, ns: str, key: str) -> Entry | None:
        """The copy held for ``(ns, key)`` if it is within the staleness bound and its
        soft TTL. A copy past half its bound is reloaded in the background while it is
        still served, so a hot key's reads do not fall through to Redis every
        ``staleness_ms``."""
        copy = self._copies.get((ns, key))
        if copy is None:
            self._misses.inc()
            return None
        age = time.monotonic() - copy.loaded_at
        if age > self.staleness or copy.entry.expires_ms <= time.time() * 1000:
            self._expired.inc()
            self._drop((ns, key))
            return None
        if age > self.staleness * _REFRESH_AT:
            self.load(ns, key, refresh=True)
        self._hits.inc()
        return copy.entry

    def peek(self, ns: str, key: str) -> Entry | None:
        """What :meth:`get` would serve, with none of its effects (no counters, no
        reload, nothing dropped): for the meter's probe."""
        copy = self._copies.get((ns, key))
        if copy is None or time.monotonic() - copy.loaded_at > self.staleness:
            return None
        return copy.entry if copy.entry.expires_ms > time.time() * 1000 else None

    def load(self, ns: str, key: str, *, refresh: bool = False) -> None:
        """Load a hot key in the background (once at a time per key); ``refresh`` loads
        it again although a copy is held."""
        item = (ns, key)
        if item in self._loads or (item in self._copies and not refresh):
            return
        task = asyncio.create_task(self._load(ns, key))
        self._loads[item] = task
        task.add_done_callback(lambda _: self._loads.pop(item, None))

    # -- loads and invalidations -------------------------------------------------

    async def _load(self, ns: str, key: str) -> None:
        epoch = self._epoch
        entry_key, meta_key = keys.entry(ns, key), keys.namespace_meta(ns)
        read_entry = ("HMGET", entry_key, *keys.ENTRY_FIELDS)
        read_gen = ("HGET", meta_key, keys.NS_GENERATION)
        try:
            entry_tracker, meta_tracker = self._tracker(entry_key), self._tracker(meta_key)
            if entry_tracker is meta_tracker:
                fields, gen = await entry_tracker.commands(read_entry, read_gen)
            else:
                fields, gen = await asyncio.gather(
                    entry_tracker.command(*read_entry), meta_tracker.command(*read_gen)
                )
            result = judge(fields, gen)
            if result.entry is not None and result.entry.tags:
                current = await meta_tracker.command(
                    "HMGET", meta_key, *(keys.tag_field(t) for t in result.entry.tags)
                )
                result = judge(fields, gen, current)
        except (RedisError, OSError, RuntimeError) as exc:
            log.debug("near cache: load of %s/%s failed: %r", ns, key, exc)
            return
        entry = result.entry
        if (
            result.lookup is not Lookup.HIT
            or entry is None
            or len(entry.value) > self.max_value_bytes
            or epoch != self._epoch  # an invalidation arrived meanwhile: it may be this one
        ):
            return
        self._copies[(ns, key)] = _Copy(entry, time.monotonic(), entry_key, meta_key)
        self._by_entry_key[entry_key] = (ns, key)
        self._by_meta_key.setdefault(meta_key, set()).add((ns, key))
        while len(self._copies) > self.max_entries:
            self._drop(next(iter(self._copies)))
        self._size.set(len(self._copies))

    def _tracker(self, redis_key: bytes) -> _Tracker:
        if isinstance(self.redis, RedisCluster):
            node = self.redis.nodes_manager.get_node_from_slot(key_slot(redis_key))
            name, make = node.name, _factory(node.connection_class, node.connection_kwargs)
        else:
            pool = self.redis.connection_pool
            name, make = "", _factory(pool.connection_class, pool.connection_kwargs)
        tracker = self._trackers.get(name)
        if tracker is None:
            tracker = self._trackers[name] = _Tracker(make, self._invalidated, self.clear)
        return tracker

    def _invalidated(self, names: list[bytes]) -> None:
        self._epoch += 1
        for name in names:
            item = self._by_entry_key.get(name)
            if item is not None:
                self._drop(item)
            for dependent in self._by_meta_key.pop(name, ()):
                self._drop(dependent)

    def _drop(self, item: tuple[str, str]) -> None:
        copy = self._copies.pop(item, None)
        if copy is not None:
            self._by_entry_key.pop(copy.entry_key, None)
            dependents = self._by_meta_key.get(copy.meta_key)
            if dependents is not None:
                dependents.discard(item)
                if not dependents:
                    del self._by_meta_key[copy.meta_key]
            self._dropped.inc()
            self._size.set(len(self._copies))

    def clear(self) -> None:
        """Drop every copy (a tracking connection broke, or Redis flushed its table)."""
        self._epoch += 1
        self._copies.clear()
        self._by_entry_key.clear()
        self._by_meta_key.clear()
        self._size.set(0)

    def __len__(self) -> int:
        return len(self._copies)

    async def stop(self) -> None:
        for task in list(self._loads.values()):
            task.cancel()
        for task in list(self._loads.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for tracker in self._trackers.values():
            await tracker.stop()
        self._trackers.clear()
        self.clear()


def _factory(
    connection_class: type[AbstractConnection], kwargs: dict[str, Any]
) -> Callable[..., AbstractConnection]:
    def make(**overrides: Any) -> AbstractConnection:
        return connection_class(**{**kwargs, **overrides})

    return make
