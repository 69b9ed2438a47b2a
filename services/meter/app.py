"""The meter process: the Meter runs inside a small HTTP app (health, readiness, metrics, report).

``GET /v1/report`` returns, per region and delay (home keys apart), the checks
since the meter started with the stale rate's 95 % upper bound, and the rolling
window's fresh and error fractions; ``/metrics`` exposes
``mrcache_meter_checks_total``, ``mrcache_meter_freshness_ratio``,
``mrcache_meter_error_ratio`` and ``mrcache_meter_stale_upper_bound``.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from libs.common.auth import INTERNAL_HEADER
from libs.common.homes import home_finder
from libs.common.metrics import Metrics
from libs.common.responses import JsonResponse
from libs.common.sidecar import sidecar_app
from services.meter.meter import Meter
from services.meter.settings import MeterSettings


def build_meter(settings: MeterSettings) -> Meter:
    platform = settings.platform()
    urls = settings.urls(platform)
    headers: dict[str, str] = {}
    if settings.internal_token is not None:
        headers[INTERNAL_HEADER] = settings.internal_token.get_secret_value()
    if settings.api_key is not None:
        headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
    return Meter(
        settings.kafka,
        urls,
        metrics=Metrics(),
        sample_rate=settings.sample_rate,
        invalidation_sample_rate=settings.invalidation_sample_rate,
        max_check_rate=settings.max_check_rate,
        home_of=home_finder(platform),
        debezium=platform.relay.debezium,
        delays=settings.delays,
        concurrency=settings.concurrency,
        timeout=settings.timeout,
        max_lateness=settings.max_lateness,
        window_seconds=settings.window_seconds,
        window_checks=settings.window_checks,
        max_pending=settings.max_pending,
        headers=headers,
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
