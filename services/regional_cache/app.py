"""The regional_cache FastAPI application: ``create_app(settings)``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from libs.common import __version__
from libs.common.auth import Authenticator
from libs.common.errors import ConfigError
from services.regional_cache import handlers
from services.regional_cache.auth import AuthMiddleware
from services.regional_cache.bodylimit import BodyLimitMiddleware
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
    # inside authentication (added before it): a caller is identified before its body is read
    app.add_middleware(BodyLimitMiddleware)
    authenticator = Authenticator(runtime.platform.auth.keys)
    if authenticator.enabled:
        token = settings.internal_token.get_secret_value() if settings.internal_token else None
        if token is None and len(runtime.platform.platform.regions) > 1:
            raise ConfigError(
                "API keys are configured: set MRCACHE_INTERNAL_TOKEN (the same secret in "
                "every region) so regions can authenticate fills and forwarded writes"
            )
        app.add_middleware(AuthMiddleware, authenticator=authenticator, internal_token=token)
    # added last, so outermost: it also counts what authentication refused
    app.add_middleware(MetricsMiddleware, metrics=runtime.metrics, region=settings.region)
    app.state.bind_host = settings.bind_host(runtime.platform)
    return app
