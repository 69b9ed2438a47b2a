"""The system of record the checker's clients write: a database behind an HTTP origin.

Cache-aside clients write a row here before they write the cache (so an origin
fill can race a write, as in production); a system-of-record writer changes a
row and then publishes the change event with the row's version, retrying until
the broker acknowledges it. Every change is one atomic step of the checker's
process and appends a state to the key's history, so the checker knows exactly
which value was the row's at any moment.

The origin serves ``GET /db/{ns}/{key}``: 200 with the row's value as
``text/plain`` (and ``X-Version: <row version>`` for namespaces whose versions
come from the system of record), 404 when there is no row. ``delay`` slows every
answer (the "slow origin" fault).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from libs.common.changes import ChangePublisher
from libs.common.errors import EventsUnavailable
from libs.common.settings import KafkaSettings
from tests.consistency.history import DbState, History


@dataclass
class Row:
    value: str | None
    version: int


class Database:
    """Rows per (namespace, key); every change is recorded in ``history.db``."""

    def __init__(self, history: History, clock: Callable[[], float]) -> None:
        self.history = history
        self.clock = clock
        self.rows: dict[tuple[str, str], Row] = {}
        # namespaces whose origin answers carry the row version
        self.versioned: set[str] = set()
        self.delay = 0.0
        # each answer also waits a random time up to this (answers overtake each other)
        self.jitter = 0.0
        self._rng = random.Random(0)

    def _states(self, ns: str, key: str) -> list[DbState]:
        states = self.history.db.setdefault(f"{ns}/{key}", [])
        if not states:
            states.append(DbState(0, None, 0.0, 0))
        return states

    def change(self, ns: str, key: str, value: str | None) -> DbState:
        """Write (``value``) or delete (None) the row; returns the state it created."""
        row = self.rows.setdefault((ns, key), Row(None, 0))
        row.value = value
        row.version += 1
        states = self._states(ns, key)
        state = DbState(len(states), value, self.clock(), row.version)
        states.append(state)
        return state

    def read(self, ns: str, key: str) -> Row:
        return self.rows.get((ns, key), Row(None, 0))

    async def _serve(self, request: Request) -> Response:
        ns, key = request.path_params["ns"], request.path_params["key"]
        row = self.read(ns, key)
        wait = self.delay + (self._rng.uniform(0, self.jitter) if self.jitter else 0.0)
        if wait:
            # the row is read first and answered late, as by a slow link or a slow
            # serializer: the answer can be older than writes made meanwhile
            value, version = row.value, row.version
            await asyncio.sleep(wait)
            row = Row(value, version)
        if row.value is None:
            return PlainTextResponse("no row", status_code=404)
        headers = {"X-Version": str(row.version)} if ns in self.versioned else {}
        return PlainTextResponse(row.value, headers=headers)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/db/{ns}/{key:path}", self._serve)])


class _InProcessServer(uvicorn.Server):
    """uvicorn inside the checker's event loop: the checker owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class OriginServer:
    """The database's HTTP origin on a loopback port; ``start()`` / ``stop()``."""

    def __init__(self, database: Database, port: int) -> None:
        self.port = port
        config = uvicorn.Config(
            database.app(),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            timeout_keep_alive=120,
        )
        self._server = _InProcessServer(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                await self._task  # raises what stopped it
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10)
            self._task = None

    def template(self, ns: str) -> str:
        return f"http://127.0.0.1:{self.port}/db/{ns}/{{key}}"


class RecordPublisher:
    """Publishes the database's change events (events.md) until the broker takes them."""

    def __init__(self, kafka: KafkaSettings, *, patience: float = 30.0) -> None:
        self._publisher = ChangePublisher(kafka, origin="checker-db")
        self.patience = patience

    async def start(self) -> None:
        await self._publisher.start()

    async def stop(self) -> None:
        await self._publisher.stop()

    async def publish(self, ns: str, key: str, version: int, op: str) -> bool:
        """True once acknowledged; False after ``patience`` seconds of refusals."""
        deadline = time.monotonic() + self.patience
        while True:
            try:
                await self._publisher.publish_change(
                    ns, key, version, "set" if op == "set" else "delete"
                )
                return True
            except EventsUnavailable:
                if time.monotonic() >= deadline:
                    return False
                await asyncio.sleep(0.2)
