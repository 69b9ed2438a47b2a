"""A minimal asyncio HTTP/1.1 client for the propagation benchmark: keep-alive, no frills.

httpx costs a few hundred microseconds of Python per request; at 1,000 writes/s
plus the end-to-end pollers that is a large share of a 2-core machine, so the
benchmark speaks HTTP/1.1 itself: one request at a time per connection,
``Content-Length`` or chunked bodies, reconnect after an error or
``Connection: close``.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from urllib.parse import urlsplit

_END = b"\r\n\r\n"


class HttpError(Exception):
    """A transport or protocol failure (never an HTTP status)."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def etag_version(self) -> int | None:
        """The integer in ``ETag: "<version>"`` (``W/`` prefix allowed), else None."""
        tag = self.headers.get("etag")
        if not tag:
            return None
        tag = tag.removeprefix("W/").strip('"')
        return int(tag) if tag.isdigit() else None


class HttpConnection:
    """One keep-alive connection; ``request`` reconnects when the last one failed."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._host_header = f"Host: {host}:{port}\r\n".encode()

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> Reply:
        head = [f"{method} {path} HTTP/1.1\r\n".encode(), self._host_header]
        for name, value in headers:
            head.append(f"{name}: {value}\r\n".encode())
        if body is not None:
            head.append(f"Content-Length: {len(body)}\r\n".encode())
        head.append(b"\r\n")
        if body:
            head.append(body)
        raw = b"".join(head)
        # A kept-alive connection the server closed while idle (uvicorn's keep-alive
        # timeout) fails before any byte of the reply: that is retried once on a new one.
        for attempt in (1, 2):
            reused = self._writer is not None
            if reused and self._reader is not None and self._reader.at_eof():
                self.close()
                reused = False
            try:
                async with asyncio.timeout(self.timeout):
                    if self._writer is None:
                        self._reader, self._writer = await asyncio.open_connection(
                            self.host, self.port
                        )
                    assert self._reader is not None
                    self._writer.write(raw)
                    reply = await self._read_reply(self._reader)
            except asyncio.IncompleteReadError as exc:
                self.close()
                if reused and attempt == 1 and not exc.partial:
                    continue
                raise HttpError(f"{method} {path}: {exc!r}") from None
            except ConnectionResetError as exc:
                self.close()
                if reused and attempt == 1:
                    continue
                raise HttpError(f"{method} {path}: {exc!r}") from None
            except TimeoutError:
                self.close()
                raise HttpError(f"{method} {path}: no reply within {self.timeout} s") from None
            except (OSError, asyncio.LimitOverrunError, ValueError) as exc:
                self.close()
                raise HttpError(f"{method} {path}: {exc!r}") from None
            if reply.headers.get("connection", "").lower() == "close":
                self.close()
            return reply
        raise AssertionError("unreachable")

    async def _read_reply(self, reader: asyncio.StreamReader) -> Reply:
        raw = await reader.readuntil(_END)
        lines = raw[: -len(_END)].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise ValueError(f"bad status line {lines[0]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._read_chunked(reader)
        else:
            body = await reader.readexactly(int(headers.get("content-length", "0")))
        return Reply(status, headers, body)

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers are expected
                return b"".join(chunks)
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)

    def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._reader = self._writer = None


class HttpPool:
    """``size`` connections to one base URL; a request waits for a free connection."""

    def __init__(self, base_url: str, size: int, *, timeout: float = 5.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"only http://host:port URLs are supported, got {base_url}")
        self.base_url = base_url
        self._all = [HttpConnection(parts.hostname, parts.port or 80, timeout) for _ in range(size)]
        self._idle: asyncio.Queue[HttpConnection] = asyncio.Queue()
        for conn in self._all:
            self._idle.put_nowait(conn)

    async def acquire(self) -> HttpConnection:
        """A free connection; give it back with :meth:`release`."""
        return await self._idle.get()

    def release(self, conn: HttpConnection) -> None:
        self._idle.put_nowait(conn)

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> Reply:
        conn = await self._idle.get()
        try:
            return await conn.request(method, path, body, headers)
        finally:
            self._idle.put_nowait(conn)

    def close(self) -> None:
        for conn in self._all:
            conn.close()
