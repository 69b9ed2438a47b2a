"""Every client operation as a sans-IO flow, shared by the async and the sync client.

A flow is a generator: it yields an :class:`Attempt` (a request for one region),
receives its :class:`Outcome` (the response, or the transport error, and how
long it took) and finally returns the operation's result. The clients only
perform attempts; region choice, failover, backoff, home regions, version
memory, request building and response parsing all happen here, once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import httpx

from libs.client import wire
from libs.client.errors import (
    Forbidden,
    HomeUnavailable,
    MrcacheClientError,
    NoRegionAvailable,
    UnavailableError,
)
from libs.client.homes import Homes
from libs.client.models import (
    Info,
    Item,
    Namespace,
    NamespaceInvalidation,
    PutResult,
    RegionStatus,
    TagInvalidation,
)
from libs.client.options import ClientOptions
from libs.client.routing import Router
from libs.client.versions import VersionMemory

T = TypeVar("T")

_USER_AGENT = "mrcache-client/0.1"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One request to one region."""

    region: str
    request: httpx.Request


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an attempt gave: a response, or the transport error (timeouts included)."""

    response: httpx.Response | None
    error: Exception | None
    elapsed: float  # seconds


Flow = Generator[Attempt, Outcome, T]


class Operations:
    """The state of one client (regions, homes, written versions) and its flows."""

    def __init__(
        self,
        regions: Mapping[str, str],
        *,
        api_key: str | None = None,
        all_regions: Sequence[str] | None = None,
        options: ClientOptions | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options or ClientOptions()
        self.api_key = api_key
        self.clock = clock
        self.router = Router(regions, self.options, clock=clock)
        # hash homes are computed over every region of the platform, with or without a URL
        self.homes = Homes(all_regions or list(regions), self.options.namespace_ttl, clock=clock)
        self.versions = VersionMemory(self.options.remembered_writes)
        self._headers = {"User-Agent": _USER_AGENT}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = httpx.Timeout(self.options.timeout, connect=self.options.connect_timeout)
        self._probe_timeout = httpx.Timeout(self.options.probe_timeout)

    def discovered(self, seed_url: str, info: Info) -> Operations:
        """A fresh state for the regions ``info`` names, the seed's own region first.

        The seed region keeps ``seed_url``: this client has just reached it there.
        """
        urls = {info.region: seed_url}
        urls.update(
            {name: url for name, url in info.regions.items() if url and name != info.region}
        )
        return Operations(
            urls,
            api_key=self.api_key,
            all_regions=list(info.regions) or [info.region],
            options=self.options,
            clock=self.clock,
        )

    # ------------------------------------------------------------------ reads

    def get(self, ns: str, key: str) -> Flow[Item | None]:
        """The key's value from the nearest healthy region, or ``None`` if it has none.

        A key this client wrote is read with ``min_version`` = that version, so
        the answer is never older than the write, whichever region serves it.
        """
        written = self.versions.floor(ns, key)
        spec = wire.get_spec(ns, key, written.version if written else None)
        _, response = yield from self._read(spec)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise wire.error_from(response)
        return wire.parse_item(response)

    def batch_get(self, ns: str, keys: Sequence[str]) -> Flow[dict[str, Item | None]]:
        """Many keys of one namespace, in request order (1000 per request).

        batchGet takes no ``min_version``: keys whose answer is older than this
        client's write are read again one by one, with it.
        """
        if isinstance(keys, str):
            raise TypeError("keys must be a sequence of keys, not one string")
        found: dict[str, Item | None] = {}
        unfetched: list[str] = []
        for chunk in wire.chunks(keys):
            region, response = yield from self._read(wire.batch_spec(ns, chunk))
            if response.status_code != 200:
                raise wire.error_from(response)
            for key, item, fetched in wire.parse_batch(response, region):
                found[key] = item
                if not fetched:
                    unfetched.append(key)
        # misses past the server's fill budget were not looked up: one by one
        for key in unfetched:
            found[key] = yield from self.get(ns, key)
        for key, item in found.items():
            written = self.versions.floor(ns, key)
            if written is not None and not written.satisfied_by(item):
                found[key] = yield from self.get(ns, key)
        return found

    def namespace(self, ns: str) -> Flow[Namespace]:
        """The namespace's effective configuration; also refreshes its cached home."""
        _, response = yield from self._read(wire.namespace_spec(ns))
        if response.status_code != 200:
            raise wire.error_from(response)
        namespace = wire.parse_namespace(response)
        self.homes.store(ns, namespace.home_region)
        return namespace

    def info(self) -> Flow[Info]:
        """``GET /v1/info`` of the nearest healthy region."""
        _, response = yield from self._read(wire.INFO)
        if response.status_code != 200:
            raise wire.error_from(response)
        return wire.parse_info(response)

    # ----------------------------------------------------------------- writes

    def put(self, ns: str, key: str, value: bytes, options: wire.PutOptions) -> Flow[PutResult]:
        """Store a value at the key's home region and remember its version."""
        spec = options.spec(ns, key, value)
        response = yield from self._write(ns, key, spec)
        if response.status_code != 200:
            raise wire.error_from(response)
        result = wire.parse_put(response)
        self.versions.remember(ns, key, result.version)
        return result

    def delete(self, ns: str, key: str) -> Flow[int | None]:
        """Delete everywhere; returns the tombstone's version (``None`` if not told)."""
        response = yield from self._write(ns, key, wire.delete_spec(ns, key))
        if response.status_code not in (200, 204):
            raise wire.error_from(response)
        version = wire.etag_version(response.headers.get("etag"))
        if version is not None:
            self.versions.remember(ns, key, version, deleted=True)
        return version

    def invalidate_namespace(self, ns: str) -> Flow[NamespaceInvalidation]:
        """Drop every entry of the namespace in every region (O(1))."""
        response = yield from self._write(ns, None, wire.invalidate_namespace_spec(ns))
        if response.status_code != 202:
            raise wire.error_from(response)
        return wire.parse_namespace_invalidation(response)

    def invalidate_tag(self, ns: str, tag: str) -> Flow[TagInvalidation]:
        """Drop every entry written with ``tag`` in every region (O(1))."""
        response = yield from self._write(ns, None, wire.invalidate_tag_spec(ns, tag))
        if response.status_code != 202:
            raise wire.error_from(response)
        return wire.parse_tag_invalidation(response)

    # ----------------------------------------------------------------- probes

    def probes(self) -> list[Attempt]:
        """One ``GET /healthz`` per region; give each outcome to :meth:`record_probe`."""
        return [self._attempt(r, wire.HEALTH, self._probe_timeout) for r in self.router.names]

    def record_probe(self, attempt: Attempt, outcome: Outcome) -> None:
        response = outcome.response
        if response is not None and response.status_code == 200:
            self.router.succeeded(attempt.region, outcome.elapsed)
            return
        reason = wire.failure(response, outcome.error)
        self.router.failed(attempt.region, reason or f"/healthz answered {outcome_status(outcome)}")

    def status(self) -> list[RegionStatus]:
        return self.router.status()

    # -------------------------------------------------------------- internals

    def _attempt(
        self, region: str, spec: wire.Spec, timeout: httpx.Timeout | None = None
    ) -> Attempt:
        request = spec.request(self.router.url(region), self._headers, timeout or self._timeout)
        return Attempt(region, request)

    def _read(self, spec: wire.Spec) -> Flow[tuple[str, httpx.Response]]:
        """Try the available regions nearest first until one answers (any non-failover answer).

        A region that answers ``503 home_unavailable`` is healthy (the key's home is not):
        it stays available, and the next region, which may hold a copy, is asked; when
        every region says so, :class:`HomeUnavailable`."""
        failures: dict[str, str] = {}
        home_away: HomeUnavailable | None = None
        for region in self.router.order():
            if not self.router.available(region):
                continue  # another request found it failing meanwhile
            outcome = yield self._attempt(region, spec)
            response = outcome.response
            if response is not None and response.status_code == 503:
                error = wire.error_from(response)
                if isinstance(error, HomeUnavailable):
                    self.router.succeeded(region, None)  # it answered; the home did not
                    home_away = error
                    continue
            reason = wire.failure(outcome.response, outcome.error)
            if reason is not None:
                self.router.failed(region, reason)
                failures[region] = reason
                continue
            assert outcome.response is not None
            # a 5xx may have waited on an origin: no sample of the region's distance
            sample = outcome.elapsed if outcome.response.status_code < 500 else None
            self.router.succeeded(region, sample)
            return region, outcome.response
        if home_away is not None:
            raise home_away
        raise self._nothing_reachable(failures)

    def _write(self, ns: str, key: str | None, spec: wire.Spec) -> Flow[httpx.Response]:
        """Send a write to its home region; through the nearest region if the home is unknown."""
        home = yield from self._home(ns, key)
        if home is None or home not in self.router:
            return (yield from self._forwarded(spec))
        if not self.router.available(home):
            raise HomeUnavailable(
                f"home region {home} is backing off after {self.router.last_error(home)}; "
                f"it is tried again in {self.router.retry_in(home):.2f} s",
                home_region=home,
            )
        outcome = yield self._attempt(home, spec)
        reason = wire.failure(outcome.response, outcome.error)
        if reason is not None:
            self.router.failed(home, reason)
            raise HomeUnavailable(
                f"home region {home} failed: {reason}",
                home_region=home,
                status=outcome_status(outcome),
            )
        # no latency sample: a write also waits for its event, which is not distance
        self.router.succeeded(home, None)
        assert outcome.response is not None
        if outcome.response.headers.get("x-cache-forwarded"):
            self.homes.drop(ns)  # the platform's config changed: read it again
        return outcome.response

    def _forwarded(self, spec: wire.Spec) -> Flow[httpx.Response]:
        """A write through the nearest region, which forwards it to the home region.

        Another region is tried only when the request surely never arrived (no
        connection): a write that timed out may have been applied.
        """
        failures: dict[str, str] = {}
        for region in self.router.order():
            if not self.router.available(region):
                continue
            outcome = yield self._attempt(region, spec)
            response = outcome.response
            if response is not None and response.status_code == 503:
                error = wire.error_from(response)
                if isinstance(error, HomeUnavailable):
                    self.router.succeeded(region, None)  # it answered; the home did not
                    raise error
            reason = wire.failure(response, outcome.error)
            if reason is None:
                self.router.succeeded(region, None)
                assert response is not None
                return response
            self.router.failed(region, reason)
            failures[region] = reason
            if not isinstance(outcome.error, httpx.ConnectError | httpx.ConnectTimeout):
                raise UnavailableError(
                    f"region {region} failed after the write was sent ({reason}); "
                    "it may have been applied"
                )
        raise self._nothing_reachable(failures)

    def _home(self, ns: str, key: str | None) -> Flow[str | None]:
        """The home region of ``key`` in ``ns``; ``None`` when the config cannot be read."""
        setting = self.homes.lookup(ns)
        if setting is None:
            try:
                namespace = yield from self.namespace(ns)
                value: str | None = namespace.home_region
            except Forbidden:
                value = None  # e.g. a write-only key: let a region forward
            setting = self.homes.store(ns, value)
        return self.homes.home(setting, ns, key)

    def _nothing_reachable(self, failures: dict[str, str]) -> MrcacheClientError:
        for region in self.router.names:
            wait = self.router.retry_in(region)
            if region not in failures and wait > 0:
                failures[region] = (
                    f"backing off after {self.router.last_error(region)}, retry in {wait:.2f} s"
                )
        listed = "; ".join(f"{region}: {why}" for region, why in failures.items())
        return NoRegionAvailable(f"no region could serve the request ({listed})", failures=failures)


def outcome_status(outcome: Outcome) -> int | None:
    return outcome.response.status_code if outcome.response is not None else None
