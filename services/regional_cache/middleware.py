"""Request metrics as a pure ASGI middleware (BaseHTTPMiddleware costs too much per hit)."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
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
