"""The small HTTP face of a background service: health, readiness, info and metrics.

The relay, the reconciler and the meter do their work in the app's lifespan,
so uvicorn's graceful SIGTERM handling stops (drains, commits) that work
before the process exits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from libs.common import __version__
from libs.common.metrics import Metrics
from libs.common.responses import JsonResponse


def sidecar_app(
    *,
    role: str,
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    metrics: Metrics,
    info: Callable[[], dict[str, Any]],
    ready: Callable[[], str | None] = lambda: None,
    routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """``ready()`` returns why the service is not ready, or None when it is."""

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await start()
        try:
            yield
        finally:
            await stop()

    async def healthz(_: Request) -> Response:
        return JsonResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        reason = ready()
        if reason is None:
            return JsonResponse({"status": "ready", "role": role})
        return JsonResponse({"error": {"code": "not_ready", "message": reason}}, status_code=503)

    async def info_endpoint(_: Request) -> Response:
        return JsonResponse({"role": role, "version": __version__, **info()})

    async def metrics_endpoint(_: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/v1/info", info_endpoint),
            Route("/metrics", metrics_endpoint),
            *routes,
        ],
        lifespan=lifespan,
    )
