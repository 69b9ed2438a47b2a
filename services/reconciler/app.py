"""The reconciler process: a pass every interval, inside a small HTTP app.

``POST /v1/reconcile`` runs a pass now and returns its report (operators and
tests use it); ``/v1/info`` shows the last report; ``/metrics`` the counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from libs.common.errors import ConfigError
from libs.common.metrics import Metrics
from libs.common.redisclient import make_redis
from libs.common.responses import JsonResponse
from libs.common.sidecar import sidecar_app
from libs.common.store import RegionStore
from services.reconciler.recent import RecentChanges
from services.reconciler.reconcile import CONCURRENT_REPAIRS, Reconciler, Report
from services.reconciler.settings import ReconcilerSettings

log = logging.getLogger(__name__)


class ReconcileLoop:
    """Runs a pass every ``interval`` seconds; one pass at a time."""

    def __init__(self, reconciler: Reconciler, metrics: Metrics, interval: float) -> None:
        self.reconciler = reconciler
        self.metrics = metrics
        self.interval = interval
        self.last: Report | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="reconcile-loop")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_once(self) -> Report:
        async with self._lock:
            report = await self.reconciler.run_once()
        m = self.metrics
        for region, count in report.repairs.items():
            m.reconciler_repairs.labels(region).inc(count)
        for region in report.skipped_regions:
            m.reconciler_skipped.labels(region).inc()
        m.reconciler_leaves.inc(report.leaves_compared)
        m.reconciler_keys.inc(report.keys_compared)
        m.reconciler_seconds.observe(report.seconds)
        if not report.skipped_regions:
            m.reconciler_last_success.set(time.time())
        if any(report.repairs.values()):
            log.info("reconcile pass repaired %s in %.3f s", report.repairs, report.seconds)
        self.last = report
        return report

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # a pass must never end the loop
                log.exception("reconcile pass failed")
            await asyncio.sleep(self.interval)


def region_stores(settings: ReconcilerSettings, regions: list[str]) -> dict[str, RegionStore]:
    """A store per region over a client whose pool outnumbers the repairs in flight."""
    urls = settings.region_redis
    missing = [r for r in regions if r not in urls]
    if missing:
        raise ConfigError(f"MRCACHE_REGION_REDIS has no Redis URL for {missing}")
    return {
        region: RegionStore(
            make_redis(
                settings.redis.model_copy(update={"url": urls[region]}),
                max_connections=4 * CONCURRENT_REPAIRS,
            ),
            tombstone_ttl=settings.tombstone_ttl,
        )
        for region in regions
    }


def create_app(settings: ReconcilerSettings) -> Starlette:
    platform = settings.platform()
    stores = region_stores(settings, platform.platform.regions)
    metrics = Metrics()
    reconciler = Reconciler(
        platform,
        stores,
        batch=settings.batch,
        pause=settings.pause,
        full_scan_every=settings.full_scan_every,
    )
    loop = ReconcileLoop(reconciler, metrics, settings.interval or platform.reconciler.interval)
    recent = (
        RecentChanges(settings.kafka, reconciler, metrics, delay=settings.recent_delay)
        if settings.recent_checks
        else None
    )

    async def start() -> None:
        await loop.start()
        if recent is not None:
            await recent.start()

    async def stop() -> None:
        if recent is not None:
            await recent.stop()
        await loop.stop()
        for store in stores.values():
            await store.redis.aclose()

    async def reconcile(_: Request) -> Response:
        return JsonResponse(dataclasses.asdict(await loop.run_once()))

    return sidecar_app(
        role="reconciler",
        start=start,
        stop=stop,
        metrics=metrics,
        info=lambda: {
            "interval": loop.interval,
            "recent_checks": None
            if recent is None
            else {"delay": recent.delay, "following": recent.ready, "overflow": recent.overflow},
            "last": dataclasses.asdict(loop.last) if loop.last else None,
        },
        routes=[Route("/v1/reconcile", reconcile, methods=["POST"])],
    )
