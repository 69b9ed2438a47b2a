"""The meter process: the Meter runs inside a small HTTP app (health, readiness, metrics, report).

``GET /v1/report`` returns, per region and delay, the checks since the meter
started and the fresh fraction of its rolling window; ``/metrics`` exposes
``mrcache_meter_checks_total`` and ``mrcache_meter_freshness_ratio``.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from libs.common.metrics import Metrics
from libs.common.responses import JsonResponse
from libs.common.sidecar import sidecar_app
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

    async def report(_: Request) -> Response:
        return JsonResponse(meter.report().as_dict())

    app = sidecar_app(
        role="meter",
        start=meter.start,
        stop=meter.stop,
        metrics=meter.metrics,
        ready=lambda: None if meter.ready else "the meter holds no partitions yet",
        info=lambda: {
            "regions": meter.urls,
            "sample_rate": meter.sample_rate,
            "delays": list(meter.delays),
        },
        routes=[Route("/v1/report", report)],
    )
    app.state.meter = meter
    return app
