"""Request metrics as a pure ASGI middleware (BaseHTTPMiddleware costs too much per hit)."""

from __future__ import annotations

import time
import uuid

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common import logs
from libs.common.metrics import Metrics


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, region: str) -> None:
        self.app = app
        self.metrics = metrics
        self.region = region
        # labelled children per (route template, status): bounded by routes x statuses
        self._children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        rid = _header(scope, b"x-request-id") or uuid.uuid4().hex[:16]
        logs.request_id.set(rid)
        path: str = scope["path"]
        logs.namespace.set(path.split("/", 4)[3] if path.startswith("/v1/ns/") else None)
        rid_header = (b"x-request-id", rid.encode("latin-1"))

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            children = self._children.get((name, status))
            if children is None:
                children = (
                    self.metrics.requests.labels(self.region, name, str(status)),
                    self.metrics.request_seconds.labels(self.region, name),
                )
                self._children[(name, status)] = children
            children[0].inc()
            children[1].observe(time.perf_counter() - started)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            text = value.decode("latin-1")
            # echo only a sane caller-chosen id into logs and headers
            return text if 0 < len(text) <= 64 and text.isprintable() else None
    return None
