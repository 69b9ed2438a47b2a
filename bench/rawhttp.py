"""A minimal asyncio HTTP/1.1 client for benchmarks that must not measure their client.

httpx costs about a millisecond of Python per request: a storm of 1,000 requests
from one process then measures the client's own queue (seconds), not the
server. Here a request is a few bytes written on a keep-alive connection and a
reply is a status line, headers and a ``Content-Length`` body read back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float  # from when the request was sent (or the storm began)


class Connection:
    """One keep-alive connection to ``host:port``; one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> Connection:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    def send(self, method: str, target: str, body: bytes = b"") -> None:
        assert self._writer is not None, "open() first"
        head = f"{method} {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if body or method in ("PUT", "POST"):
            head += f"Content-Length: {len(body)}\r\n"
        self._writer.write(head.encode() + b"\r\n" + body)

    async def receive(self, started: float) -> Reply:
        assert self._reader is not None, "open() first"
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await self._reader.readexactly(length) if length else b""
        return Reply(status, headers, body, time.perf_counter() - started)

    async def request(self, method: str, target: str, body: bytes = b"") -> Reply:
        started = time.perf_counter()
        self.send(method, target, body)
        return await self.receive(started)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = self._reader = None


def _split(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return parts.hostname or "127.0.0.1", parts.port or 80, target


async def storm(urls: Sequence[str], size: int) -> tuple[list[Reply | Exception], float]:
    """``size`` GETs (round-robin over ``urls``) on ``size`` connections opened beforehand,
    all written at once: every latency counts from that instant. Returns the replies
    (or the errors) and the wall time until the last reply."""
    targets = [_split(urls[i % len(urls)]) for i in range(size)]
    connections = await asyncio.gather(*(Connection(h, p).open() for h, p, _ in targets))
    try:
        started = time.perf_counter()
        for connection, (_, _, target) in zip(connections, targets, strict=True):
            connection.send("GET", target)
        replies = await asyncio.gather(
            *(c.receive(started) for c in connections), return_exceptions=True
        )
        wall = time.perf_counter() - started
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    return [r if isinstance(r, Reply) else Exception(repr(r)) for r in replies], wall


class Pool:
    """``size`` keep-alive connections to one server, each used by one request at a time."""

    def __init__(self, url: str, size: int) -> None:
        self.host, self.port, _ = _split(url)
        self.size = size
        self._idle: asyncio.Queue[Connection] = asyncio.Queue()
        self._all: list[Connection] = []

    async def open(self) -> Pool:
        self._all = list(
            await asyncio.gather(
                *(Connection(self.host, self.port).open() for _ in range(self.size))
            )
        )
        for connection in self._all:
            self._idle.put_nowait(connection)
        return self

    async def request(self, method: str, target: str, body: bytes = b"") -> Reply:
        connection = await self._idle.get()
        try:
            return await connection.request(method, target, body)
        except BaseException:
            # a half-read reply would poison the connection: replace it
            await connection.close()
            connection = await Connection(self.host, self.port).open()
            self._all.append(connection)
            raise
        finally:
            self._idle.put_nowait(connection)

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._all))
