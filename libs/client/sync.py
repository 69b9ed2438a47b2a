"""The blocking client: :class:`MrcacheClient` (safe to share between threads)."""

from __future__ import annotations

import logging
import threading
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


class MrcacheClient:
    """The blocking twin of :class:`~libs.client.AsyncMrcacheClient`, method for method.

    ``with`` (or ``start()`` / ``close()``) runs the ``/healthz`` probes in a
    daemon thread; everything else behaves exactly as in the async client.
    """

    def __init__(
        self,
        regions: Mapping[str, str],
        *,
        api_key: str | None = None,
        all_regions: Sequence[str] | None = None,
        options: ClientOptions | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._ops = Operations(regions, api_key=api_key, all_regions=all_regions, options=options)
        self._http = httpx.Client(transport=transport, trust_env=self._ops.options.trust_env)
        self._probing: threading.Thread | None = None
        self._stopping = threading.Event()

    @classmethod
    def discover(
        cls,
        url: str,
        *,
        api_key: str | None = None,
        options: ClientOptions | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> Self:
        """A client for every region that ``GET {url}/v1/info`` names."""
        # the seed is named by its URL until /v1/info tells its region
        client = cls({url: url}, api_key=api_key, options=options, transport=transport)
        try:
            client._ops = client._ops.discovered(url, client.info())
        except BaseException:
            client.close()
            raise
        return client

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Probe every region now, then every ``probe_interval`` in a daemon thread."""
        if self._probing is None:
            self.probe()
            self._stopping.clear()
            self._probing = threading.Thread(
                target=self._probe_forever, name="mrcache-probes", daemon=True
            )
            self._probing.start()

    def stop(self) -> None:
        """Stop the background probes (the client keeps working without them)."""
        thread, self._probing = self._probing, None
        if thread is not None:
            self._stopping.set()
            thread.join()

    def close(self) -> None:
        """Stop the probes and close the connection pool."""
        self.stop()
        self._http.close()

    def probe(self) -> None:
        """One ``GET /healthz`` round over every region, one after the other."""
        for attempt in self._ops.probes():
            self._ops.record_probe(attempt, self._perform(attempt))

    def status(self) -> list[models.RegionStatus]:
        """Each region's health, latency and backoff as this client sees them."""
        return self._ops.status()

    def get(self, ns: str, key: str) -> models.Item | None:
        """The key's value, or ``None`` when absent (never older than this client's write)."""
        return self._run(self._ops.get(ns, key))

    def batch_get(self, ns: str, keys: Sequence[str]) -> dict[str, models.Item | None]:
        """Many keys of one namespace, in request order; absent keys map to ``None``."""
        return self._run(self._ops.batch_get(ns, keys))

    def put(
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
        """Store ``value`` at the key's home region (see ``AsyncMrcacheClient.put``)."""
        options = wire.PutOptions(ttl, tags, version, if_match, if_none_match, content_type)
        flow = self._ops.put(ns, key, value, options)
        return self._run(flow)

    def delete(self, ns: str, key: str) -> int | None:
        """Delete the key everywhere; returns the tombstone's version."""
        return self._run(self._ops.delete(ns, key))

    def invalidate_namespace(self, ns: str) -> models.NamespaceInvalidation:
        """Drop every entry of ``ns`` in every region."""
        return self._run(self._ops.invalidate_namespace(ns))

    def invalidate_tag(self, ns: str, tag: str) -> models.TagInvalidation:
        """Drop every entry of ``ns`` written with ``tag`` in every region."""
        return self._run(self._ops.invalidate_tag(ns, tag))

    def namespace(self, ns: str) -> models.Namespace:
        """The namespace's effective configuration (its home region among it)."""
        return self._run(self._ops.namespace(ns))

    def info(self) -> models.Info:
        """The nearest region's ``/v1/info``: its name and every region's URL."""
        return self._run(self._ops.info())

    def _run(self, flow: Flow[T]) -> T:
        try:
            attempt = next(flow)
            while True:
                attempt = flow.send(self._perform(attempt))
        except StopIteration as done:
            result: T = done.value
            return result

    def _perform(self, attempt: Attempt) -> Outcome:
        started = time.perf_counter()
        try:
            response = self._http.send(attempt.request)
        except httpx.TransportError as exc:
            return Outcome(None, exc, time.perf_counter() - started)
        return Outcome(response, None, time.perf_counter() - started)

    def _probe_forever(self) -> None:
        while not self._stopping.wait(self._ops.options.probe_interval):
            try:
                self.probe()
            except Exception:  # a bug here must not end the probes for good
                log.exception("mrcache probe round failed")
