"""The relay process: the Relay runs inside a small HTTP app (health, readiness, metrics).

Running it in the app's lifespan means uvicorn's graceful SIGTERM handling
drains and commits the relay before the process exits.
"""

from __future__ import annotations

import functools

from starlette.applications import Starlette

from libs.common.debezium import to_event
from libs.common.metrics import Metrics
from libs.common.redisclient import RedisClient, make_redis
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
    )
    return relay, redis


def create_app(settings: RelaySettings) -> Starlette:
    relay, redis = build_relay(settings)

    async def stop() -> None:
        await relay.stop()
        await redis.aclose()

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
    )
    app.state.relay = relay
    return app
