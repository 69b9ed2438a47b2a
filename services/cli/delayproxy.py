"""A TCP proxy that delays every byte by a one-way delay in each direction.

``python -m services.cli.delayproxy --delay-ms 40 --route 10.0.0.101:9092=10.0.0.1:9092 ...``

Each accepted connection opens one upstream connection; every chunk read from
either side is written to the other side ``delay`` seconds after it was read,
in order (a queue per direction), so a request/response exchange over the
proxy costs one extra round trip of ``2 * delay``. EOF travels with the same
delay (half-close is kept); a reset or an error on either side closes both.

In process, :class:`DelayProxy` can change its delay while it runs (each chunk
takes the delay in force when it was read) and :meth:`DelayProxy.pause` holds
every chunk until :meth:`DelayProxy.resume`, like a link that stops delivering:
the WAN benchmarks and the consistency checker's network faults use both.

What it does not model: bandwidth, loss, and the TCP handshake (the client's
connect completes at the proxy at once). The clients measured here (aiokafka,
httpx pools) keep their connections open, so the handshake is paid once.

With ``--ready-file`` it writes the file once every listener is bound, so a
caller in another network namespace can tell it is ready.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 65536


@dataclass(frozen=True)
class Route:
    listen_host: str
    listen_port: int
    upstream_host: str
    upstream_port: int

    @classmethod
    def parse(cls, text: str) -> Route:
        """``LISTEN_HOST:PORT=UPSTREAM_HOST:PORT``."""
        listen, sep, upstream = text.partition("=")
        if not sep:
            raise ValueError(f"route {text!r} is not LISTEN_HOST:PORT=UPSTREAM_HOST:PORT")
        lhost, lport = _host_port(listen)
        uhost, uport = _host_port(upstream)
        return cls(lhost, lport, uhost, uport)

    def __str__(self) -> str:
        return f"{self.listen_host}:{self.listen_port}={self.upstream_host}:{self.upstream_port}"


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host, int(port)


async def _delayed_pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, proxy: DelayProxy
) -> None:
    """Copy ``reader`` to ``writer``, each chunk the proxy's delay after it was read, and
    none while the proxy is paused."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def receive() -> None:
        try:
            while True:
                data = await reader.read(_CHUNK)
                queue.put_nowait((loop.time() + proxy.delay, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            queue.put_nowait((loop.time() + proxy.delay, b""))

    async def send() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            await proxy.flowing.wait()
            if not data:
                if writer.can_write_eof():
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    receiver = asyncio.create_task(receive())
    try:
        await send()
    finally:
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver


class DelayProxy:
    """Every route's listener; ``start()`` binds them all, ``close()`` stops accepting.

    ``delay`` (seconds, one way) may be changed at any time; it applies to the bytes
    read from then on."""

    def __init__(self, routes: Sequence[Route], delay: float) -> None:
        self.routes = list(routes)
        self.delay = delay
        self.flowing = asyncio.Event()
        self.flowing.set()
        self._servers: list[asyncio.Server] = []
        self._conns: set[asyncio.Task[None]] = set()

    def pause(self) -> None:
        """Hold every byte in both directions (connections stay open) until ``resume()``."""
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    async def start(self) -> None:
        for route in self.routes:
            server = await asyncio.start_server(
                functools.partial(self._accept, route=route),
                route.listen_host,
                route.listen_port,
                reuse_address=True,
            )
            self._servers.append(server)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._conns):
            task.cancel()
        for server in self._servers:
            await server.wait_closed()

    async def _accept(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, route: Route
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        upstream_w: asyncio.StreamWriter | None = None
        try:
            try:
                upstream_r, upstream_w = await asyncio.open_connection(
                    route.upstream_host, route.upstream_port
                )
            except OSError:
                return
            pipes = {
                asyncio.create_task(_delayed_pipe(client_r, upstream_w, self)),
                asyncio.create_task(_delayed_pipe(upstream_r, client_w, self)),
            }
            try:
                # a clean EOF ends one direction only (half-close); an error ends both
                await asyncio.wait(pipes, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._conns.discard(task)
            for w in (client_w, upstream_w):
                if w is not None:
                    w.close()
                    with contextlib.suppress(OSError, ConnectionError):
                        await w.wait_closed()


async def serve(routes: Sequence[Route], delay: float, ready_file: Path | None) -> None:
    proxy = DelayProxy(routes, delay)
    await proxy.start()
    if ready_file is not None:
        text = "\n".join(str(r) for r in routes) + "\n"
        await asyncio.to_thread(ready_file.write_text, text, encoding="utf-8")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await proxy.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.cli.delayproxy", description=__doc__)
    parser.add_argument("--delay-ms", type=float, required=True, help="one-way delay")
    parser.add_argument(
        "--route",
        action="append",
        type=Route.parse,
        required=True,
        help="LISTEN_HOST:PORT=UPSTREAM_HOST:PORT (repeat for more)",
    )
    parser.add_argument("--ready-file", type=Path, help="written once every listener is bound")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.run(serve(args.route, args.delay_ms / 1000.0, args.ready_file))
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        asyncio.run(serve(args.route, args.delay_ms / 1000.0, args.ready_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
