"""Pushing this region's events to the other regions directly, next to Kafka.

A relay one WAN hop from the broker sees an event one way after it was
published plus up to a round trip of waiting for its next fetch. With
``[platform] push_events = true`` the region that publishes an event also sends
it, over the keep-alive connections it already holds to every other region, to
``POST /internal/v1/events``, where the region's cache applies it at once: one
one-way delay after the write.

Kafka stays the durable path: a push is best effort (a full queue, a region
down or slow: the event is dropped from the push and arrives by Kafka), and
applying is idempotent by version, so an event pushed and then consumed again
changes nothing the second time, in either order.

One sender per region with up to eight requests in flight: an event goes out at
once while a request is free, and what is published while all eight are on the
wire goes in the next one, so the requests per second stay bounded by the round
trip, whatever the write rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from libs.common.metrics import Metrics
from services.regional_cache.regions import RegionClient

log = logging.getLogger(__name__)

# events one request carries at most, and bytes (one event past it goes alone)
MAX_PUSH_BATCH = 500
# what a region accepts in one pushed request: MAX_PUSH_BATCH events of the largest value,
# base64 in JSON (the sender keeps its batches far below, at _MAX_PUSH_BYTES)
MAX_PUSH_REQUEST_BYTES = 64 * 1024 * 1024
_MAX_PUSH_BYTES = 8 * 1024 * 1024
# events waiting for one region past which the oldest are dropped (Kafka brings them)
_MAX_QUEUED = 20_000
# requests in flight to one region at once
_IN_FLIGHT = 2
# a region that failed a push is not pushed to again for this long
_BACKOFF_S = 1.0


class EventPusher:
    """``push()`` never waits; ``start()`` / ``stop()`` own one sending task per region."""

    def __init__(
        self, regions: RegionClient, peers: list[str], metrics: Metrics, *, region: str
    ) -> None:
        self.regions = regions
        self.peers = [p for p in peers if p != region]
        self.metrics = metrics
        self.region = region
        self._queues: dict[str, list[bytes]] = {p: [] for p in self.peers}
        self._wake: dict[str, asyncio.Event] = {p: asyncio.Event() for p in self.peers}
        self._down_until: dict[str, float] = dict.fromkeys(self.peers, 0.0)
        self._tasks: list[asyncio.Task[None]] = []
        # requests on the wire (references kept until they are done)
        self._sending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._send_loop(peer), name=f"push-{peer}") for peer in self.peers
        ]

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._sending]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def push(self, payload: bytes) -> None:
        """Queue one encoded event for every other region."""
        now = time.monotonic()
        for peer in self.peers:
            if self._down_until[peer] > now:
                self.metrics.push_events.labels(self.region, peer, "skipped").inc()
                continue
            queue = self._queues[peer]
            if len(queue) >= _MAX_QUEUED:
                del queue[: len(queue) // 2]
                self.metrics.push_events.labels(self.region, peer, "dropped").inc(_MAX_QUEUED // 2)
            queue.append(payload)
            self._wake[peer].set()

    async def _send_loop(self, peer: str) -> None:
        queue, wake = self._queues[peer], self._wake[peer]
        # requests in flight to the region: an event waits for a free one, never for a
        # whole round trip of the request before it (order does not matter: versions)
        slots = asyncio.Semaphore(_IN_FLIGHT)
        while True:
            await wake.wait()
            await slots.acquire()
            take, size = 0, 0
            while take < min(len(queue), MAX_PUSH_BATCH):
                size += len(queue[take])
                if take and size > _MAX_PUSH_BYTES:
                    break
                take += 1
            batch = queue[:take]
            del queue[:take]
            if not queue:
                wake.clear()
            if not batch:
                slots.release()
                continue
            task = asyncio.create_task(self._send(peer, batch, slots))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, peer: str, batch: list[bytes], slots: asyncio.Semaphore) -> None:
        try:
            await self.regions.push_events(peer, b"\n".join(batch))
        except Exception as exc:  # best effort: Kafka delivers whatever a push loses
            log.info("push of %d events to %s failed: %r", len(batch), peer, exc)
            self.metrics.push_events.labels(self.region, peer, "failed").inc(len(batch))
            self._down_until[peer] = time.monotonic() + _BACKOFF_S
            self._queues[peer].clear()
            self._wake[peer].clear()
            return
        finally:
            slots.release()
        self.metrics.push_events.labels(self.region, peer, "sent").inc(len(batch))
