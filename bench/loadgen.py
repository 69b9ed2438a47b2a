"""A small HTTP/1.1 load generator: open loop (paced) or closed loop, keep-alive connections.

Open loop is what ``wrk`` cannot do: request ``i`` is *scheduled* at
``start + i / rate`` whatever the server does, and its latency is measured
from that scheduled time, not from when it was actually sent. A server that
stalls therefore pays for every request that should have gone out meanwhile
(no coordinated omission). The send lag (actual send minus scheduled time)
is reported too, so a generator that falls behind is visible.

Each connection is one thread with a blocking socket: ``time.sleep`` wakes
within ~0.1 ms here, where asyncio timers round to whole milliseconds.
Threads claim request slots in order; a slot waits for a free connection
when all of them are busy, and that wait counts in its latency.

Closed loop (``--rate 0``) sends back to back on every connection; it is the
fallback when ``wrk`` is missing.

Prints one JSON object on stdout (latencies in milliseconds).
"""

from __future__ import annotations

import argparse
import itertools
import json
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_HEADER_END = b"\r\n\r\n"


class ProtocolError(Exception):
    pass


@dataclass
class Plan:
    host: str
    port: int
    method: str
    paths: list[str]
    body: bytes
    rate: float  # requests per second; 0 = closed loop
    duration: float
    warmup: float
    connections: int
    timeout: float = 5.0


@dataclass
class Samples:
    """Per-request figures of the measured window (after the warm-up)."""

    latency: list[float] = field(default_factory=list)  # from scheduled (open) or sent (closed)
    service: list[float] = field(default_factory=list)  # from actual send to full response
    send_lag: list[float] = field(default_factory=list)  # actual send minus scheduled
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Connection:
    """One keep-alive connection that reads exactly one response per request."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.addr = (host, port)
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buf = bytearray()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.addr, timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.buf.clear()
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def request(self, raw: bytes) -> int:
        """Send one request, read its whole response; returns the status."""
        sock = self.sock or self._connect()
        sock.sendall(raw)
        buf = self.buf
        while (end := buf.find(_HEADER_END)) < 0:
            self._fill(sock)
        head = bytes(buf[:end]).split(b"\r\n")
        status = int(head[0].split(b" ", 2)[1])
        length = 0
        keep_alive = True
        for line in head[1:]:
            name, _, value = line.partition(b":")
            lname = name.strip().lower()
            if lname == b"content-length":
                length = int(value)
            elif lname == b"transfer-encoding":
                raise ProtocolError("chunked responses are not supported")
            elif lname == b"connection" and value.strip().lower() == b"close":
                keep_alive = False
        total = end + len(_HEADER_END) + length
        while len(buf) < total:
            self._fill(sock)
        del buf[:total]
        if not keep_alive:
            self.close()
        return status

    def _fill(self, sock: socket.socket) -> None:
        chunk = sock.recv(65536)
        if not chunk:
            raise ProtocolError("connection closed by the server")
        self.buf += chunk


def _raw_requests(plan: Plan) -> list[bytes]:
    host = f"Host: {plan.host}:{plan.port}\r\n"
    extra = f"Content-Length: {len(plan.body)}\r\n" if plan.body or plan.method != "GET" else ""
    return [
        f"{plan.method} {path} HTTP/1.1\r\n{host}{extra}\r\n".encode() + plan.body
        for path in plan.paths
    ]


def run(plan: Plan) -> dict[str, Any]:
    raws = _raw_requests(plan)
    samples = Samples()
    slots = itertools.count()  # next() on a count is atomic under the GIL
    open_loop = plan.rate > 0
    interval = 1.0 / plan.rate if open_loop else 0.0
    total_slots = int(plan.rate * (plan.warmup + plan.duration)) if open_loop else sys.maxsize
    start = time.perf_counter() + 0.1
    measure_from = start + plan.warmup
    stop_at = measure_from + plan.duration

    def worker() -> None:
        conn = Connection(plan.host, plan.port, plan.timeout)
        try:
            while True:
                slot = next(slots)
                if slot >= total_slots:
                    return
                if open_loop:
                    scheduled = start + slot * interval
                    delay = scheduled - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                sent = time.perf_counter()
                if not open_loop:
                    if sent >= stop_at:
                        return
                    scheduled = sent
                try:
                    status = conn.request(raws[slot % len(raws)])
                except (OSError, ProtocolError, ValueError, IndexError):
                    conn.close()
                    status = -1
                done = time.perf_counter()
                if scheduled < measure_from:
                    continue
                with samples.lock:
                    if status < 0:
                        samples.errors += 1
                    else:
                        samples.statuses[status] = samples.statuses.get(status, 0) + 1
                        samples.latency.append(done - scheduled)
                        samples.service.append(done - sent)
                        samples.send_lag.append(sent - scheduled)
        finally:
            conn.close()

    sys.setswitchinterval(0.0005)  # a woken thread must not wait 5 ms for the GIL
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(plan.connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return summarize(plan, samples)


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(pct / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def _ms(values: list[float]) -> dict[str, float]:
    values.sort()
    return {f"p{p:g}": round(percentile(values, p) * 1000, 3) for p in (50, 90, 99, 99.9)} | {
        "max": round(values[-1] * 1000, 3) if values else 0.0
    }


def summarize(plan: Plan, samples: Samples) -> dict[str, Any]:
    completed = len(samples.latency)
    # requests scheduled (open) or sent (closed) within the measured window
    window = plan.duration
    ok = sum(n for status, n in samples.statuses.items() if 200 <= status < 400)
    return {
        "generator": "python-open-loop" if plan.rate else "python-closed-loop",
        "offered_rps": plan.rate or None,
        "requests": completed,
        "rps": round(completed / window, 1) if window else 0.0,
        "non_2xx_3xx": completed - ok,
        "socket_errors": samples.errors,
        "statuses": {str(k): v for k, v in sorted(samples.statuses.items())},
        "latency_ms": _ms(samples.latency),
        "service_ms": _ms(samples.service),
        "send_lag_ms": _ms(samples.send_lag),
        "connections": plan.connections,
        "duration_s": plan.duration,
        "warmup_s": plan.warmup,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--paths-file", type=Path, required=True, help="one request path a line")
    parser.add_argument("--body-bytes", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.0, help="req/s offered; 0 = closed loop")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    paths = [line for line in args.paths_file.read_text().splitlines() if line]
    plan = Plan(
        host=args.host,
        port=args.port,
        method=args.method,
        paths=paths,
        body=b"x" * args.body_bytes,
        rate=args.rate,
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
    )
    print(json.dumps(run(plan)))


if __name__ == "__main__":
    main()
