"""Region information, health, readiness and metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from libs.common import __version__
from libs.common.errors import StoreUnavailable
from libs.common.responses import JsonResponse
from services.regional_cache.auth import privileged
from services.regional_cache.deps import RuntimeDep
from services.regional_cache.handlers import error_response

router = APIRouter(tags=["system"])


@router.get("/v1/info")
async def info(rt: RuntimeDep, request: Request) -> JsonResponse:
    """This region, every region's URL (what clients connect to), software version and
    limits; eviction, Redis memory and event settings for admin keys only."""
    regions = {
        name: rt.settings.region_urls.get(name) or rt.platform.region(name).url
        for name in rt.platform.platform.regions
    }
    body = {
        "region": rt.region,
        "regions": regions,
        "version": __version__,
        "limits": {
            "max_value_bytes": rt.settings.max_value_bytes,
            "max_ttl": rt.settings.max_ttl,
        },
    }
    if not privileged(request.scope):
        return JsonResponse(body)
    try:
        memory = await rt.store.memory_info()
    except StoreUnavailable:
        memory = {}
    body["eviction"] = {
        "policy": rt.eviction_policy,
        "maxmemory": rt.maxmemory,
        "redis_policy": memory.get("maxmemory_policy"),
        "redis_maxmemory": memory.get("maxmemory"),
        "used_memory": memory.get("used_memory"),
    }
    body["events"] = {
        "topic": rt.settings.kafka.topic,
        "outbox_active": rt.publisher.outbox_active,
    }
    return JsonResponse(body)


@router.get("/healthz")
async def healthz() -> JsonResponse:
    """Liveness: 200 while the process runs."""
    return JsonResponse({"status": "ok"})


@router.get("/readyz", responses={503: {"description": "not ready"}})
async def readyz(rt: RuntimeDep) -> JsonResponse:
    """200 only when this region's Redis and Kafka both answer."""

    async def redis_ok() -> bool:
        try:
            await asyncio.wait_for(rt.store.ping(), 1.0)
        except (StoreUnavailable, TimeoutError):
            return False
        return True

    redis_up, kafka_up = await asyncio.gather(redis_ok(), rt.publisher.kafka_ready())
    reasons = [
        what
        for what, up in (("redis unreachable", redis_up), ("kafka unreachable", kafka_up))
        if not up
    ]
    if reasons:
        return error_response(503, "not_ready", "; ".join(reasons))
    return JsonResponse({"status": "ready", "region": rt.region})


@router.get("/metrics", response_class=Response)
async def metrics(rt: RuntimeDep) -> Response:
    """Prometheus text format."""
    return Response(rt.metrics.render(), media_type=CONTENT_TYPE_LATEST)
