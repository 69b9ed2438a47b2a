"""In-process single-flight: concurrent callers for one key share one execution."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """The first caller for a key runs ``fn``; the others await its result.

    The work runs as its own task and callers await it shielded, so a caller
    that goes away (a client disconnect) does not cancel it for the others.
    """

    def __init__(self) -> None:
        self._inflight: dict[Hashable, asyncio.Task[T]] = {}

    def __len__(self) -> int:
        return len(self._inflight)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._inflight

    async def do(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> T:
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(fn())
            self._inflight[key] = task
            task.add_done_callback(self._forget(key))
        return await asyncio.shield(task)

    def _forget(self, key: Hashable) -> Callable[[asyncio.Task[T]], None]:
        def done(_: asyncio.Task[T]) -> None:
            self._inflight.pop(key, None)

        return done
