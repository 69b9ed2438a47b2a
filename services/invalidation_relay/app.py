"""The relay process: the Relay runs inside a small HTTP app (health, readiness, metrics).

Running it in the app's lifespan means uvicorn's graceful SIGTERM handling
drains and commits the relay before the process exits.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from libs.common import __version__
from libs.common.debezium import to_event
from libs.common.metrics import Metrics
from libs.common.responses import JsonResponse
from libs.common.service import make_redis
from libs.common.store import RegionStore
from services.invalidation_relay.relay import Relay
from services.invalidation_relay.settings import RelaySettings


def build_relay(settings: RelaySettings) -> tuple[Relay, Redis]:
    platform = settings.platform()
    redis = make_redis(settings.redis, max_connections=16)
    relay = Relay(
        settings.kafka,
        RegionStore(redis, tombstone_ttl=settings.tombstone_ttl),
        Metrics(),
        region=settings.region,
        group_id=settings.group_id,
        drop_rate=platform.faults.relay_drop_rate.get(settings.region, 0.0),
        decoders={m.topic: functools.partial(to_event, m) for m in platform.relay.debezium},
        max_batch=settings.max_batch,
    )
    return relay, redis


def create_app(settings: RelaySettings) -> Starlette:
    relay, redis = build_relay(settings)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await relay.start()
        try:
            yield
        finally:
            await relay.stop()
            await redis.aclose()

    async def healthz(_: Request) -> Response:
        return JsonResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        if relay.ready:
            return JsonResponse({"status": "ready", "region": settings.region})
        return JsonResponse(
            {"error": {"code": "not_ready", "message": "relay holds no partitions yet"}},
            status_code=503,
        )

    async def info(_: Request) -> Response:
        return JsonResponse(
            {
                "region": settings.region,
                "role": "invalidation_relay",
                "version": __version__,
                "group_id": settings.group_id,
                "drop_rate": relay.drop_rate,
                "applied": relay.applied_total,
            }
        )

    async def metrics(_: Request) -> Response:
        return Response(relay.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/v1/info", info),
            Route("/metrics", metrics),
        ],
        lifespan=lifespan,
    )
    app.state.relay = relay
    return app
