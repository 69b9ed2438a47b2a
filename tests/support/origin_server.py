"""A real HTTP origin for tests, run as its own process and steered over HTTP.

``python -m tests.support.origin_server --port P`` serves:

* ``GET /items/{key}``: 200 ``value-of-{key}-v{version}`` as ``text/plain``
  with ``ETag: "<version>"`` (per-key version, default 1) and
  ``Cache-Control: max-age=<n>`` when ``max_age`` is set; 404 for keys in
  ``absent``. ``latency_ms`` delays every answer; a failure mode ``fail``
  (``"500"``, ``"503"``, ``"timeout"``: hold the request far longer than any
  client timeout, ``"reset"``: drop the connection with a TCP reset) hits a
  ``fail_rate`` fraction of requests (default 1; ``fail_rate`` alone fails
  with ``"500"``; ``fail_next=N`` fails only the next N requests).
  ``statuses`` ({key: status}) answers a key with any status.
* ``POST /_control`` with a JSON object of settings (see ``_Settings``);
  ``GET /_stats`` gives ``{"requests": {key: n}, "total", "inflight",
  "max_inflight"}``; ``POST /_reset`` clears counts and settings and frees
  requests held by ``"timeout"``.

:class:`OriginServer` starts one on a free port and wraps the control calls.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from libs.common.processes import ManagedProcess, free_port, wait_port

_ROOT = Path(__file__).resolve().parents[2]
_FAIL_MODES = (None, "500", "503", "timeout", "reset")
# "timeout" holds a request this long unless reset first: longer than any client timeout
_HOLD_SECONDS = 60.0


@dataclass
class _Settings:
    latency_ms: float = 0.0
    fail: str | None = None
    fail_rate: float = 1.0
    # when set, only this many more requests fail; then the failure mode turns off
    fail_next: int | None = None
    max_age: int | None = None
    versions: dict[str, int] = field(default_factory=dict)
    absent: set[str] = field(default_factory=set)
    no_version: bool = False
    # extras: a body of exactly N bytes for a key, other content type, extra headers
    sizes: dict[str, int] = field(default_factory=dict)
    content_type: str = "text/plain"
    headers: dict[str, str] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)

    def update(self, body: dict[str, Any]) -> None:
        for name, value in body.items():
            if name == "fail":
                if value not in _FAIL_MODES:
                    raise ValueError(f"fail must be one of {_FAIL_MODES}")
                self.fail = value
            elif name == "fail_rate":
                rate = float(value)
                if not 0 <= rate <= 1:
                    raise ValueError("fail_rate must be in [0, 1]")
                self.fail_rate = rate
                if self.fail is None and rate > 0:
                    self.fail = "500"
            elif name == "fail_next":
                self.fail_next = None if value is None else max(0, int(value))
            elif name == "latency_ms":
                self.latency_ms = max(0.0, float(value))
            elif name == "max_age":
                self.max_age = None if value is None else int(value)
            elif name == "versions":
                self.versions.update({str(k): int(v) for k, v in dict(value).items()})
            elif name == "absent":
                self.absent = {str(k) for k in value}
            elif name == "no_version":
                self.no_version = bool(value)
            elif name == "sizes":
                self.sizes.update({str(k): int(v) for k, v in dict(value).items()})
            elif name == "content_type":
                self.content_type = str(value)
            elif name == "statuses":
                self.statuses.update({str(k): int(v) for k, v in dict(value).items()})
            elif name == "headers":
                self.headers = {str(k): str(v) for k, v in dict(value).items()}
            else:
                raise ValueError(f"unknown setting {name!r}")


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.settings = _Settings()
        self.requests: dict[str, int] = {}
        self.total = 0
        self.inflight = 0
        self.max_inflight = 0
        # set by a reset: wakes requests held by "timeout"
        self.release = threading.Event()

    def reset(self) -> None:
        with self.lock:
            self.settings = _Settings()
            self.requests = {}
            self.total = 0
            self.max_inflight = self.inflight
            old, self.release = self.release, threading.Event()
        old.set()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real origins do
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would drown the test logs

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/_stats":
            st = self.server.state
            with st.lock:
                body = {
                    "requests": dict(st.requests),
                    "total": st.total,
                    "inflight": st.inflight,
                    "max_inflight": st.max_inflight,
                }
            self._json(200, body)
        elif path.startswith("/items/"):
            self._item(unquote(path[len("/items/") :]))
        else:
            self._json(404, {"error": "no such path"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        st = self.server.state
        if path == "/_reset":
            st.reset()
            self._json(200, {"ok": True})
        elif path == "/_control":
            try:
                body = json.loads(raw or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("the body must be a JSON object")
                with st.lock:
                    st.settings.update(body)
            except (ValueError, TypeError) as exc:
                self._json(400, {"error": str(exc)})
                return
            self._json(200, {"ok": True})
        else:
            self._json(404, {"error": "no such path"})

    def _item(self, key: str) -> None:
        st = self.server.state
        with st.lock:
            st.requests[key] = st.requests.get(key, 0) + 1
            st.total += 1
            st.inflight += 1
            st.max_inflight = max(st.max_inflight, st.inflight)
            cfg = st.settings
            release = st.release
            fail = cfg.fail if cfg.fail and random.random() < cfg.fail_rate else None
            if fail and cfg.fail_next is not None:
                if cfg.fail_next == 0:
                    fail = None
                else:
                    cfg.fail_next -= 1
            status = cfg.statuses.get(key)
            latency = cfg.latency_ms / 1000
            version = cfg.versions.get(key, 1)
            absent = key in cfg.absent
            size = cfg.sizes.get(key)
            headers = self._item_headers(cfg, version)
        try:
            if latency:
                time.sleep(latency)
            if fail == "timeout":
                release.wait(_HOLD_SECONDS)
                self._drop()
            elif fail == "reset":
                self._drop()
            elif fail in ("500", "503"):
                self._json(int(fail), {"error": f"injected {fail}"})
            elif status is not None:
                self._json(status, {"error": f"status {status} as configured"})
            elif absent:
                self._json(404, {"error": "absent"})
            else:
                value = f"value-of-{key}-v{version}".encode()
                if size is not None:
                    value = (value * (size // max(len(value), 1) + 1))[:size]
                self._send(200, value, headers)
        finally:
            with st.lock:
                st.inflight -= 1

    @staticmethod
    def _item_headers(cfg: _Settings, version: int) -> dict[str, str]:
        headers = {"content-type": cfg.content_type}
        if not cfg.no_version:
            headers["etag"] = f'"{version}"'
        if cfg.max_age is not None:
            headers["cache-control"] = f"max-age={cfg.max_age}"
        headers.update({k.lower(): v for k, v in cfg.headers.items()})
        return headers

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, body: Any) -> None:
        self._send(status, json.dumps(body).encode(), {"content-type": "application/json"})

    def _drop(self) -> None:
        """Close with a TCP reset (SO_LINGER 0) and no response."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.state = _State()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a controllable test origin")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    server = _Server(args.port)

    def stop(signum: int, frame: FrameType | None) -> None:
        server.state.release.set()
        # shutdown() waits for serve_forever, which runs in this thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    print(f"origin serving on 127.0.0.1:{args.port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()


class OriginServer:
    """The origin as a child process, for fixtures: ``OriginServer().start(workdir)``."""

    def __init__(self) -> None:
        self.port = 0
        self.proc: ManagedProcess | None = None
        self._http: httpx.Client | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, workdir: Path) -> OriginServer:
        self.port = free_port()
        pythonpath = os.pathsep.join(p for p in (str(_ROOT), os.environ.get("PYTHONPATH")) if p)
        self.proc = ManagedProcess(
            f"origin-{self.port}",
            [sys.executable, "-m", "tests.support.origin_server", "--port", str(self.port)],
            workdir / f"origin-{self.port}.log",
            env={"PYTHONPATH": pythonpath},
        ).start()
        wait_port(self.proc, self.port)
        self._http = httpx.Client(base_url=self.base_url, timeout=5.0, trust_env=False)
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        if self.proc is not None:
            self.proc.stop(grace=5.0)

    def url(self, path_template: str = "/items/{key}") -> str:
        """An origin URL template for a namespace (``{key}`` left in)."""
        return f"{self.base_url}{path_template}"

    def control(self, **settings: Any) -> None:
        self._post("/_control", settings)

    def stats(self) -> dict[str, Any]:
        response = self._client().get("/_stats")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def reset(self) -> None:
        self._post("/_reset", {})

    def _post(self, path: str, body: dict[str, Any]) -> None:
        response = self._client().post(path, json=body)
        if response.status_code != 200:
            raise ValueError(f"origin {path}: {response.status_code} {response.text}")

    def _client(self) -> httpx.Client:
        assert self._http is not None, "OriginServer.start() was not called"
        return self._http


if __name__ == "__main__":
    main()
