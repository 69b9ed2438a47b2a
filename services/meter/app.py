"""The meter process: the Meter runs inside a small HTTP app (health, readiness, metrics, report).

``GET /v1/report`` returns, per region and delay, the checks since the meter
started and the fresh fraction of its rolling window; ``/metrics`` exposes
``mrcache_meter_checks_total`` and ``mrcache_meter_freshness_ratio``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from libs.common import __version__
from libs.common.metrics import Metrics
from libs.common.responses import JsonResponse
from services.meter.meter import Meter
from services.meter.settings import MeterSettings


def build_meter(settings: MeterSettings) -> Meter:
    urls = settings.urls(settings.platform())
    key = settings.api_key
    return Meter(
        settings.kafka,
        urls,
        metrics=Metrics(),
        sample_rate=settings.sample_rate,
        delays=settings.delays,
        concurrency=settings.concurrency,
        timeout=settings.timeout,
        max_lateness=settings.max_lateness,
        window_seconds=settings.window_seconds,
        window_checks=settings.window_checks,
        max_pending=settings.max_pending,
        headers={"Authorization": f"Bearer {key.get_secret_value()}"} if key else None,
    )


def create_app(settings: MeterSettings) -> Starlette:
    meter = build_meter(settings)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await meter.start()
        try:
            yield
        finally:
            await meter.stop()

    async def healthz(_: Request) -> Response:
        return JsonResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        if meter.ready:
            return JsonResponse({"status": "ready", "regions": list(meter.urls)})
        return JsonResponse(
            {"error": {"code": "not_ready", "message": "the meter holds no partitions yet"}},
            status_code=503,
        )

    async def info(_: Request) -> Response:
        return JsonResponse(
            {
                "role": "meter",
                "version": __version__,
                "regions": meter.urls,
                "sample_rate": meter.sample_rate,
                "delays": list(meter.delays),
            }
        )

    async def report(_: Request) -> Response:
        return JsonResponse(meter.report().as_dict())

    async def metrics(_: Request) -> Response:
        return Response(meter.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/v1/info", info),
            Route("/v1/report", report),
            Route("/metrics", metrics),
        ],
        lifespan=lifespan,
    )
    app.state.meter = meter
    return app
