"""The regional_cache FastAPI application: ``create_app(settings)``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from libs.common import __version__
from services.regional_cache import handlers
from services.regional_cache.middleware import MetricsMiddleware
from services.regional_cache.routes import internal, keys, namespaces, system
from services.regional_cache.runtime import Runtime
from services.regional_cache.settings import RegionalCacheSettings


class _HotRoute(Route):
    """A Starlette route that records itself in the scope like FastAPI's routes do
    (the key decoding and the metrics read the route template from there)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self
        await super().handle(scope, receive, send)


def create_app(settings: RegionalCacheSettings) -> FastAPI:
    """Build the app for one region; Redis and Kafka clients start with its lifespan."""
    runtime = Runtime.build(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title=f"mrcache regional_cache ({settings.region})",
        version=__version__,
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    handlers.install(app)
    app.include_router(keys.router)
    app.include_router(namespaces.router)
    app.include_router(system.router)
    app.include_router(internal.router)
    # GET of a key is the platform's hot path: a plain Starlette route placed first
    # serves it (first match wins) without FastAPI's per-request wrapper; the FastAPI
    # route of the same path stays, unmatched, for the OpenAPI schema.
    app.router.routes.insert(0, _HotRoute(keys.KEY_PATH, keys.get_key, methods=["GET"]))
    app.add_middleware(MetricsMiddleware, metrics=runtime.metrics, region=settings.region)
    return app
