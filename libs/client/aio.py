"""The asyncio client: :class:`AsyncMrcacheClient`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Self, TypeVar

import httpx

from libs.client import models, wire
from libs.client.operations import Attempt, Flow, Operations, Outcome
from libs.client.options import ClientOptions

T = TypeVar("T")
log = logging.getLogger(__name__)


class AsyncMrcacheClient:
    """An asyncio client for a multi-region mrcache platform.

    Reads go to the healthy region with the lowest measured latency and fail
    over to the next one at once; writes go straight to the key's home region;
    reads of keys this client wrote carry ``min_version``, so they never see
    older data than the write, in any region. ``async with`` (or ``start()`` /
    ``close()``) runs the background ``/healthz`` probes; without them latency
    is measured from real reads, configured order first.

    ``regions`` maps region name to base URL, for every region of the platform
    (or pass the full list of names as ``all_regions``): homes of ``"hash"``
    namespaces are computed over them exactly as the regions compute them.
    """

    def __init__(
        self,
        regions: Mapping[str, str],
        *,
        api_key: str | None = None,
        all_regions: Sequence[str] | None = None,
        options: ClientOptions | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._ops = Operations(regions, api_key=api_key, all_regions=all_regions, options=options)
        self._http = httpx.AsyncClient(transport=transport, trust_env=self._ops.options.trust_env)
        self._probing: asyncio.Task[None] | None = None

    @classmethod
    async def discover(
        cls,
        url: str,
        *,
        api_key: str | None = None,
        options: ClientOptions | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> Self:
        """A client for every region that ``GET {url}/v1/info`` names."""
        # the seed is named by its URL until /v1/info tells its region
        client = cls({url: url}, api_key=api_key, options=options, transport=transport)
        try:
            client._ops = client._ops.discovered(url, await client.info())
        except BaseException:
            await client.close()
            raise
        return client

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Probe every region now, then every ``probe_interval`` in a background task."""
        if self._probing is None:
            await self.probe()
            self._probing = asyncio.create_task(self._probe_forever(), name="mrcache-probes")

    async def stop(self) -> None:
        """Stop the background probes (the client keeps working without them)."""
        task, self._probing = self._probing, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        """Stop the probes and close the connection pool."""
        await self.stop()
        await self._http.aclose()

    async def probe(self) -> None:
        """One ``GET /healthz`` round over every region, concurrently."""
        attempts = self._ops.probes()
        outcomes = await asyncio.gather(*(self._perform(a) for a in attempts))
        for attempt, outcome in zip(attempts, outcomes, strict=True):
            self._ops.record_probe(attempt, outcome)

    def status(self) -> list[models.RegionStatus]:
        """Each region's health, latency and backoff as this client sees them."""
        return self._ops.status()

    async def get(self, ns: str, key: str) -> models.Item | None:
        """The key's value, or ``None`` when absent (never older than this client's write)."""
        return await self._run(self._ops.get(ns, key))

    async def batch_get(self, ns: str, keys: Sequence[str]) -> dict[str, models.Item | None]:
        """Many keys of one namespace, in request order; absent keys map to ``None``."""
        return await self._run(self._ops.batch_get(ns, keys))

    async def put(
        self,
        ns: str,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        tags: Sequence[str] = (),
        version: int | None = None,
        if_match: int | None = None,
        if_none_match: bool = False,
        content_type: str | None = None,
    ) -> models.PutResult:
        """Store ``value`` at the key's home region.

        ``ttl`` in seconds (else the namespace default), ``tags`` for tag
        invalidation, ``version`` an external version (409 ``StaleVersion``
        unless newer), ``if_match`` compare-and-set on a version,
        ``if_none_match`` only if absent (412 ``PreconditionFailed`` otherwise).
        """
        options = wire.PutOptions(ttl, tags, version, if_match, if_none_match, content_type)
        flow = self._ops.put(ns, key, value, options)
        return await self._run(flow)

    async def delete(self, ns: str, key: str) -> int | None:
        """Delete the key everywhere; returns the tombstone's version."""
        return await self._run(self._ops.delete(ns, key))

    async def invalidate_namespace(self, ns: str) -> models.NamespaceInvalidation:
        """Drop every entry of ``ns`` in every region."""
        return await self._run(self._ops.invalidate_namespace(ns))

    async def invalidate_tag(self, ns: str, tag: str) -> models.TagInvalidation:
        """Drop every entry of ``ns`` written with ``tag`` in every region."""
        return await self._run(self._ops.invalidate_tag(ns, tag))

    async def namespace(self, ns: str) -> models.Namespace:
        """The namespace's effective configuration (its home region among it)."""
        return await self._run(self._ops.namespace(ns))

    async def info(self) -> models.Info:
        """The nearest region's ``/v1/info``: its name and every region's URL."""
        return await self._run(self._ops.info())

    async def _run(self, flow: Flow[T]) -> T:
        try:
            attempt = next(flow)
            while True:
                attempt = flow.send(await self._perform(attempt))
        except StopIteration as done:
            result: T = done.value
            return result

    async def _perform(self, attempt: Attempt) -> Outcome:
        started = time.perf_counter()
        try:
            response = await self._http.send(attempt.request)
        except httpx.TransportError as exc:
            return Outcome(None, exc, time.perf_counter() - started)
        return Outcome(response, None, time.perf_counter() - started)

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self._ops.options.probe_interval)
            try:
                await self.probe()
            except Exception:  # a bug here must not end the probes for good
                log.exception("mrcache probe round failed")
