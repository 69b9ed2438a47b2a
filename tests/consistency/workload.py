"""The operations the checker's clients run, drawn from a seeded generator.

Each client has its own random generator (seed and client number), so a seed
replays the same sequence of operations per client; when they run depends on
the platform's speed. Keys are few per namespace, so operations on one key
overlap often: the interleavings nobody planned are the point.

Namespaces exercise the platform's modes (see :data:`NAMESPACES`):

``fx``  fixed home, read-through origin without versions (cache-aside: the client
        writes the database, then the cache), short TTLs, stale-while-revalidate,
        negative caching, database-only writes (the cache may lag them until its
        TTL or an invalidation)
``fo``  another origin namespace, homed elsewhere, with long TTLs: a stale copy a
        region installs stays until something replaces it; some deletes purge the
        cache alone (the database keeps its row): the key stays deleted until it is
        written again or its namespace invalidated
``hs``  every key homed by hash; the cache is the store; conditional writes; a
        namespace cleared and filled again
``rp``  replicate mode: events carry the value
``sr``  versions come from a system of record that publishes change events with
        row versions; clients also write the cache with (and sloppy ones without)
        the row version
``vx``  external versions at the edge of the legal range
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from libs.common.versions import MAX_VERSION
from tests.consistency.database import Database, RecordPublisher
from tests.consistency.history import History, Op

TAGS = ("a", "b")


@dataclass(frozen=True)
class Namespace:
    name: str
    keys: int
    # weight of each operation kind in this namespace
    mix: dict[str, float]
    # the namespace's config table (what the platform is told)
    config: dict[str, Any]
    # with a read-through origin in the checker's database
    origin: bool = False
    # versions come from the system of record (needs the platform to know the setting)
    record_versions: bool = False
    weight: float = 1.0

    def key(self, n: int) -> str:
        return f"k{n}"


NAMESPACES: tuple[Namespace, ...] = (
    Namespace(
        "fx",
        10,
        {
            "put": 14,
            "delete": 3,
            "db_write": 3,
            "get": 40,
            "get_min": 6,
            "batch_get": 4,
            "inv_ns": 0.6,
            "inv_tag": 1,
        },
        {
            "home_region": "us-east",
            "default_ttl": 4,
            "ttl_jitter": 0.2,
            "stale_while_revalidate": 6,
            "negative_ttl": 3,
        },
        origin=True,
        weight=30,
    ),
    Namespace(
        "fo",
        8,
        {
            "put": 10,
            "delete": 2,
            "purge": 2,
            "db_write": 2,
            "get": 40,
            "get_min": 4,
            "inv_ns": 0.5,
            "inv_tag": 1.5,
        },
        {"home_region": "eu-west", "default_ttl": 30, "negative_ttl": 2},
        origin=True,
        weight=15,
    ),
    Namespace(
        "hs",
        12,
        {
            "put": 14,
            "put_if_match": 3,
            "put_if_none_match": 1,
            "delete": 4,
            "get": 40,
            "get_min": 8,
            "batch_get": 4,
            "inv_ns": 0.08,
            "inv_then_put": 0.1,
            "inv_tag": 1.0,
        },
        {"home_region": "hash", "default_ttl": 3600},
        weight=30,
    ),
    Namespace(
        "rp",
        6,
        {"put": 10, "delete": 2, "get": 30, "get_min": 4, "inv_tag": 1},
        {"home_region": "eu-west", "propagation": "replicate", "default_ttl": 3600},
        weight=12,
    ),
    Namespace(
        "sr",
        8,
        {
            "sor_write": 10,
            "sor_delete": 2,
            "sor_write_put": 3,
            "sor_write_sloppy_put": 1,
            "get": 30,
            "get_min": 5,
        },
        {"home_region": "ap-south", "default_ttl": 30},
        origin=True,
        record_versions=True,
        weight=20,
    ),
    Namespace(
        "vx",
        2,
        {"put_max": 1, "put": 2, "get": 4},
        {"home_region": "us-east", "default_ttl": 3600},
        weight=2,
    ),
)


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    names = list(weights)
    return rng.choices(names, weights=[weights[n] for n in names])[0]


@dataclass
class Targets:
    """Where clients send requests: every replica of every region."""

    replicas: dict[str, list[str]]

    def pick(self, rng: random.Random) -> tuple[str, str]:
        region = rng.choice(sorted(self.replicas))
        return region, rng.choice(self.replicas[region])


@dataclass
class Workload:
    """Shared by the clients: the history, the database and the id counter."""

    history: History
    database: Database
    publisher: RecordPublisher
    targets: Targets
    clock: Callable[[], float]
    http: httpx.AsyncClient
    namespaces: Sequence[Namespace] = NAMESPACES
    _next_id: int = 0
    # indeterminate and 5xx answers are kept; statuses >= 500 other than 502/503/504
    server_errors: list[Op] = field(default_factory=list)
    # cache-aside writers of one key take turns (database write, then cache write), as an
    # application would: otherwise two writers race each other, not the platform
    _turns: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)

    def turn(self, ns: str, key: str) -> asyncio.Lock:
        return self._turns.setdefault((ns, key), asyncio.Lock())

    def new_op(self, client: int, kind: str, ns: str, **fields: Any) -> Op:
        self._next_id += 1
        op = Op(id=self._next_id, client=client, kind=kind, ns=ns, invoke=self.clock(), **fields)
        self.history.ops.append(op)
        return op


class Client:
    """One client: a loop of seeded operations until ``stop`` is set."""

    def __init__(self, number: int, seed: int, work: Workload, think: float) -> None:
        self.number = number
        self.rng = random.Random(seed * 1000 + number)
        self.work = work
        self.think = think
        # read-your-writes, as the SDK does it: the last version this client wrote per key
        self.written: dict[tuple[str, str], int] = {}
        # the last version this client saw per key (for If-Match)
        self.seen: dict[tuple[str, str], int] = {}

    async def run(self, stop: asyncio.Event) -> None:
        spaces = list(self.work.namespaces)
        while not stop.is_set():
            space = self.rng.choices(spaces, weights=[s.weight for s in spaces])[0]
            kind = _pick(self.rng, space.mix)
            key = space.key(self.rng.randrange(space.keys))
            region, url = self.work.targets.pick(self.rng)
            await self.one(space, kind, key, region, url)
            await asyncio.sleep(self.rng.expovariate(1 / self.think))

    async def one(self, space: Namespace, kind: str, key: str, region: str, url: str) -> None:
        ns = space.name
        if kind in ("put", "put_if_match", "put_if_none_match", "put_max"):
            await self.put(space, key, region, url, kind)
        elif kind in ("delete", "purge"):
            await self.delete(space, key, region, url, purge=kind == "purge")
        elif kind == "db_write":
            op = self.work.new_op(self.number, "db_write", ns, key=key)
            op.value = self.value(op)
            op.db_state = self.work.database.change(ns, key, op.value).index
            op.outcome, op.complete = "ok", self.work.clock()
        elif kind in ("sor_write", "sor_delete", "sor_write_put", "sor_write_sloppy_put"):
            await self.record_write(space, key, region, url, kind)
        elif kind in ("get", "get_min"):
            floor = self.written.get((ns, key)) if kind == "get_min" else None
            await self.get(ns, key, region, url, floor)
        elif kind == "batch_get":
            names = sorted({space.key(self.rng.randrange(space.keys)) for _ in range(4)} | {key})
            await self.batch_get(ns, names, region, url)
        elif kind == "inv_ns":
            await self.invalidate(ns, None, region, url)
        elif kind == "inv_then_put":
            # clear a namespace, then fill it again: writes after the invalidation must
            # stay, and the writer reads its writes back
            await self.invalidate(ns, None, region, url)
            for n in self.rng.sample(range(space.keys), 3):
                target, where = self.work.targets.pick(self.rng)
                await self.put(space, space.key(n), target, where, "put")
                target, where = self.work.targets.pick(self.rng)
                await self.get(
                    ns, space.key(n), target, where, self.written.get((ns, space.key(n)))
                )
        elif kind == "inv_tag":
            await self.invalidate(ns, self.rng.choice(TAGS), region, url)
        else:
            raise ValueError(f"unknown operation {kind}")

    def value(self, op: Op) -> str:
        return f"{op.ns}.{op.key}.{op.id}"

    async def _request(self, op: Op, method: str, url: str, **kwargs: Any) -> httpx.Response | None:
        try:
            response = await self.work.http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            op.outcome, op.error = "info", type(exc).__name__
            op.complete = self.work.clock()
            return None
        op.complete = self.work.clock()
        op.status = response.status_code
        if response.status_code >= 500:
            op.outcome = "info"
            try:
                op.error = response.json()["error"]["code"]
            except (ValueError, KeyError, TypeError):
                op.error = response.text[:80]
            if response.status_code not in (502, 503, 504):
                self.work.server_errors.append(op)
        return response

    async def put(self, space: Namespace, key: str, region: str, url: str, kind: str) -> None:
        ns = space.name
        op = self.work.new_op(self.number, "put", ns, key=key, region=region)
        op.value = self.value(op)
        params: dict[str, str] = {}
        headers: dict[str, str] = {"Content-Type": "text/plain"}
        op.tags = tuple(sorted(t for t in TAGS if self.rng.random() < 0.4))
        if op.tags:
            params["tags"] = ",".join(op.tags)
        if kind == "put_if_match" and (ns, key) in self.seen:
            op.params["if_match"] = self.seen[(ns, key)]
            headers["If-Match"] = f'"{self.seen[(ns, key)]}"'
        elif kind == "put_if_none_match":
            op.params["if_none_match"] = "*"
            headers["If-None-Match"] = "*"
        elif kind == "put_max":
            external = MAX_VERSION - self.rng.randrange(3)
            op.params["version"] = external
            params["version"] = str(external)
        path = f"{url}/v1/ns/{ns}/keys/{key}"
        if space.origin:
            # cache-aside: the database first, then the cache
            async with self.work.turn(ns, key):
                op.invoke = self.work.clock()
                op.db_state = self.work.database.change(ns, key, op.value).index
                response = await self._request(
                    op, "PUT", path, content=op.value, params=params, headers=headers
                )
        else:
            response = await self._request(
                op, "PUT", path, content=op.value, params=params, headers=headers
            )
        self._written(op, response)

    def _written(self, op: Op, response: httpx.Response | None) -> None:
        if response is None or response.status_code >= 500:
            return
        if response.status_code == 200:
            body = response.json()
            op.outcome, op.version = "ok", int(body["version"])
            op.served_by = body.get("home_region")
            op.expires_at = float(body["expires_at"])
            assert op.key is not None
            self.written[(op.ns, op.key)] = op.version
            self.seen[(op.ns, op.key)] = op.version
        else:
            op.outcome = "fail"
            try:
                op.error = response.json()["error"]["code"]
            except (ValueError, KeyError, TypeError):
                op.error = str(response.status_code)

    async def delete(
        self, space: Namespace, key: str, region: str, url: str, *, purge: bool = False
    ) -> None:
        ns = space.name
        op = self.work.new_op(self.number, "delete", ns, key=key, region=region)
        path = f"{url}/v1/ns/{ns}/keys/{key}"
        if purge:  # the cache's copy only: the database keeps its row
            op.params["purge"] = True
            response = await self._request(op, "DELETE", path)
        elif space.origin:
            async with self.work.turn(ns, key):
                op.invoke = self.work.clock()
                op.db_state = self.work.database.change(ns, key, None).index
                response = await self._request(op, "DELETE", path)
        else:
            response = await self._request(op, "DELETE", path)
        if response is None or response.status_code >= 500:
            return
        if response.status_code == 204:
            op.outcome = "ok"
            etag = response.headers.get("etag", "").strip('"')
            op.version = int(etag) if etag.isdigit() else None
            if op.version is not None:
                self.written[(ns, key)] = op.version
        else:
            op.outcome, op.error = "fail", str(response.status_code)

    async def record_write(
        self, space: Namespace, key: str, region: str, url: str, kind: str
    ) -> None:
        """The system of record changes a row and publishes its event; a cache-aside
        client may then write the cache too (with the row version, or sloppily without)."""
        ns = space.name
        deleting = kind == "sor_delete"
        op = self.work.new_op(self.number, "sor_delete" if deleting else "sor_write", ns, key=key)
        op.value = None if deleting else self.value(op)
        state = self.work.database.change(ns, key, op.value)
        op.db_state, op.version = state.index, state.row_version
        acked = await self.work.publisher.publish(
            ns, key, state.row_version, "delete" if deleting else "set"
        )
        op.complete = self.work.clock()
        op.outcome = "ok" if acked else "info"
        if acked:
            self.written[(ns, key)] = state.row_version
        if kind in ("sor_write_put", "sor_write_sloppy_put") and op.value is not None:
            put = self.work.new_op(self.number, "put", ns, key=key, region=region)
            put.value, put.db_state = op.value, state.index
            params = {}
            if kind == "sor_write_put":
                params["version"] = str(state.row_version)
                put.params["version"] = state.row_version
            response = await self._request(
                put,
                "PUT",
                f"{url}/v1/ns/{ns}/keys/{key}",
                content=put.value,
                params=params,
                headers={"Content-Type": "text/plain"},
            )
            self._written(put, response)

    async def get(self, ns: str, key: str, region: str, url: str, floor: int | None) -> None:
        op = self.work.new_op(self.number, "get", ns, key=key, region=region)
        params = {}
        if floor is not None:
            op.params["min_version"] = floor
            params["min_version"] = str(floor)
        response = await self._request(op, "GET", f"{url}/v1/ns/{ns}/keys/{key}", params=params)
        if response is None or response.status_code >= 500:
            return
        if response.status_code == 200:
            op.outcome, op.found = "ok", True
            op.value = response.text
            etag = response.headers.get("etag", "").strip('"')
            op.version = int(etag) if etag.isdigit() else None
            op.cache = response.headers.get("x-cache")
            op.served_by = response.headers.get("x-cache-region")
            if op.version is not None:
                self.seen[(ns, key)] = op.version
        elif response.status_code == 404:
            op.outcome, op.found = "ok", False
        else:
            op.outcome, op.error = "fail", str(response.status_code)

    async def batch_get(self, ns: str, names: list[str], region: str, url: str) -> None:
        invoke = self.work.clock()
        ops = [
            self.work.new_op(self.number, "get", ns, key=k, region=region, via="batch")
            for k in names
        ]
        carrier = ops[0]
        response = await self._request(
            carrier, "POST", f"{url}/v1/ns/{ns}/keys:batchGet", json={"keys": names}
        )
        for op in ops:
            op.invoke, op.complete = invoke, carrier.complete
            op.status, op.error = carrier.status, carrier.error
            op.outcome = carrier.outcome
        if response is None or response.status_code != 200:
            if response is not None and response.status_code < 500:
                for op in ops:
                    op.outcome = "fail"
            return
        for op, item in zip(ops, response.json()["items"], strict=True):
            op.outcome, op.found = "ok", bool(item["found"])
            if op.found:
                op.value = base64.b64decode(item["value_b64"]).decode()
                op.version = int(item["version"])
                op.served_by = region

    async def invalidate(self, ns: str, tag: str | None, region: str, url: str) -> None:
        kind = "inv_ns" if tag is None else "inv_tag"
        op = self.work.new_op(self.number, kind, ns, tag=tag, region=region)
        path = f"/v1/ns/{ns}/invalidate" if tag is None else f"/v1/ns/{ns}/tags/{tag}/invalidate"
        response = await self._request(op, "POST", url + path)
        if response is None or response.status_code >= 500:
            return
        if response.status_code == 202:
            body = response.json()
            op.outcome = "ok"
            op.version = int(body.get("generation") or body.get("version"))
        else:
            op.outcome, op.error = "fail", str(response.status_code)


async def final_reads(work: Workload, client: Client) -> None:
    """After the run: every key read once in every region (all bounds have passed)."""
    for space in work.namespaces:
        for n in range(space.keys):
            key = space.key(n)
            for region, urls in sorted(work.targets.replicas.items()):
                await client.get(space.name, key, region, urls[0], None)


def now_clock() -> Callable[[], float]:
    start = time.monotonic()
    return lambda: time.monotonic() - start
