"""Request metrics as a pure ASGI middleware (BaseHTTPMiddleware costs too much per hit)."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common.metrics import Metrics


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, region: str) -> None:
        self.app = app
        self.metrics = metrics
        self.region = region

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
            self.metrics.requests.labels(self.region, name, str(status)).inc()
            self.metrics.request_seconds.labels(self.region, name).observe(
                time.perf_counter() - started
            )
