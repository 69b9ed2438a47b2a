"""The relay process: the Relay runs inside a small HTTP app (health, readiness, metrics).

Running it in the app's lifespan means uvicorn's graceful SIGTERM handling
drains and commits the relay before the process exits.
"""

from __future__ import annotations

import functools

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from libs.common.debezium import to_event
from libs.common.metrics import Metrics
from libs.common.redisclient import RedisClient, make_redis
from libs.common.responses import JsonResponse
from libs.common.sidecar import sidecar_app
from libs.common.store import RegionStore
from services.invalidation_relay.relay import Relay
from services.invalidation_relay.settings import RelaySettings


def build_relay(settings: RelaySettings) -> tuple[Relay, RedisClient]:
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
        limits=settings.event_limits(),
    )
    return relay, redis


def create_app(settings: RelaySettings) -> Starlette:
    relay, redis = build_relay(settings)

    async def stop() -> None:
        await relay.stop()
        await redis.aclose()

    async def faults(request: Request) -> Response:
        """Change this relay's drills while it runs (``[faults] control = true`` only)."""
        try:
            body = await request.json()
            rate = body["drop_rate"] if isinstance(body, dict) else None
        except (ValueError, KeyError):
            rate = None
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            return JsonResponse(
                {
                    "error": {
                        "code": "invalid_request",
                        "message": 'body must be {"drop_rate": <number in [0, 1]>}',
                    }
                },
                status_code=400,
            )
        relay.drop_rate = float(rate)
        return JsonResponse({"drop_rate": relay.drop_rate})

    controlled = settings.platform().faults.control

    app = sidecar_app(
        role="invalidation_relay",
        start=relay.start,
        stop=stop,
        metrics=relay.metrics,
        ready=lambda: None if relay.ready else "relay holds no partitions yet",
        info=lambda: {
            "region": settings.region,
            "group_id": settings.group_id,
            "drop_rate": relay.drop_rate,
            "applied": relay.applied_total,
        },
        routes=[Route("/v1/faults", faults, methods=["PUT"])] if controlled else [],
    )
    app.state.relay = relay
    return app
