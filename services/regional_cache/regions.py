"""HTTP to the other regions: forwarded writes and remote fills from the home region."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx
from starlette.requests import Request
from starlette.responses import Response

from libs.common.auth import presents_token
from libs.common.errors import HomeUnavailable, OriginUnavailable
from libs.common.naming import path_segment
from libs.common.store import Entry, Stamps
from services.regional_cache.auth import INTERNAL

log = logging.getLogger(__name__)

FORWARDED = "X-Cache-Forwarded"
# Set on every region-to-region request: a forwarded write is never forwarded again.
HOP = "X-Mrcache-Hop"
_PASS_REQUEST = ("content-type", "if-match", "if-none-match", "authorization", "x-min-version")
_PASS_RESPONSE = ("content-type", "etag", "x-cache", "x-cache-region", "age")


@dataclass(frozen=True, slots=True)
class Fetched:
    """What the home region holds for a key: a valid entry, or none (``held`` version)."""

    entry: Entry | None
    held: int


class RegionClient:
    """Pooled HTTP client to every region; ``start()`` / ``stop()``."""

    def __init__(
        self,
        region: str,
        urls: dict[str, str],
        *,
        timeout: float,
        internal_token: str | None = None,
    ) -> None:
        self.region = region
        # proves to the other regions that a request comes from a region of the platform
        self._internal = {INTERNAL: internal_token} if internal_token else {}
        self._token = internal_token.encode() if internal_token else None
        self.urls = urls
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout, connect=min(1.0, self.timeout)),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            trust_env=False,
        )

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def url_of(self, region: str) -> str:
        url = self.urls.get(region)
        if not url:
            raise HomeUnavailable(
                f"no URL is configured for home region {region}", home_region=region
            )
        return url.rstrip("/")

    def from_a_region(self, request: Request) -> bool:
        """Whether a request may speak for another region (its internal headers count):
        it carries the internal token; with none configured every caller can (the
        platform is open, and the service binds to loopback only)."""
        return self._token is None or presents_token(request.headers.get(INTERNAL), self._token)

    async def forward(self, request: Request, home: str, body: bytes) -> Response:
        """Send the client's write to the home region and relay its answer."""
        if request.headers.get(HOP) and self.from_a_region(request):
            # the sender believed this region is home: configs disagree, do not ping-pong
            raise HomeUnavailable(
                f"{request.headers[HOP]} forwarded this to {self.region}, but its home is "
                f"{home}; check that every region runs the same config",
                home_region=home,
            )
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        query = request.scope.get("query_string", b"")
        target = self.url_of(home) + raw_path.decode("latin-1")
        if query:
            target += "?" + query.decode("latin-1")
        headers = {k: v for k, v in request.headers.items() if k.lower() in _PASS_REQUEST}
        headers[HOP] = self.region
        headers.update(self._internal)
        try:
            reply = await self._http().request(
                request.method, target, content=body, headers=headers
            )
        except httpx.HTTPError as exc:
            log.warning("forward to %s failed: %r", home, exc)
            raise HomeUnavailable(f"home region {home} is unreachable", home_region=home) from None
        out = {k: v for k, v in reply.headers.items() if k.lower() in _PASS_RESPONSE}
        out[FORWARDED] = self.region
        return Response(reply.content, status_code=reply.status_code, headers=out)

    async def fetch_entry(
        self, home: str, ns: str, key: str, *, fill: bool = False, floor: int = 0
    ) -> Fetched:
        """The home region's valid copy of a key, with its version, expiry and stamps.

        With ``fill`` the home fills the key from the namespace's origin first when it
        holds no valid copy, or (``floor``) one older than that (the home assigns its
        version): a region that is not the key's home never asks the origin itself
        while the home answers."""
        target = f"{self.url_of(home)}/internal/v1/ns/{ns}/entries/{path_segment(key)}"
        params = {"fill": "1"} if fill else {}
        if floor:
            params["min_version"] = str(floor)
        try:
            reply = await self._http().get(
                target,
                params=params or None,
                headers={HOP: self.region, **self._internal},
            )
        except httpx.HTTPError as exc:
            log.warning("fill from %s failed: %r", home, exc)
            raise HomeUnavailable(f"home region {home} is unreachable", home_region=home) from None
        if reply.status_code == 404:
            return Fetched(None, int(reply.headers.get("x-version", "0") or 0))
        if reply.status_code == 502:
            raise OriginUnavailable(f"the origin did not answer home region {home}'s fill")
        if reply.status_code != 200:
            raise HomeUnavailable(
                f"home region {home} answered {reply.status_code}", home_region=home
            )
        h = reply.headers
        tags = tuple(h["x-tags"].split(",")) if h.get("x-tags") else ()
        versions = tuple(int(v) for v in h["x-tag-versions"].split(",")) if tags else ()
        entry = Entry(
            value=reply.content,
            content_type=h.get("content-type", "application/octet-stream"),
            version=int(h["x-version"]),
            written_ms=int(h["x-written-ms"]),
            expires_ms=int(h["x-expires-ms"]),
            tags=tags,
            generation=int(h["x-generation"]),
            tag_versions=versions,
        )
        return Fetched(entry, entry.version)

    async def fetch_stamps(self, home: str, ns: str, tags: tuple[str, ...]) -> Stamps:
        """The stamps to write an entry under, from the namespace's home region."""
        target = f"{self.url_of(home)}/internal/v1/ns/{ns}/stamps"
        try:
            reply = await self._http().get(
                target,
                params={"tags": ",".join(tags)} if tags else None,
                headers={HOP: self.region, **self._internal},
            )
            if reply.status_code != 200:
                raise ValueError(f"status {reply.status_code}")
            body = reply.json()
            generation = int(body["generation"])
            versions = tuple(int(v) for v in body["tag_versions"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.warning("stamps from %s failed: %r", home, exc)
            raise HomeUnavailable(
                f"namespace {ns}'s home region {home}, which orders its invalidations, "
                "did not give the stamps of this write",
                home_region=home,
            ) from None
        if len(versions) != len(tags):
            raise HomeUnavailable(f"home region {home} answered other tags", home_region=home)
        return generation, versions

    async def push_events(self, region: str, body: bytes) -> None:
        """Send encoded events (one per line) for ``region`` to apply now
        (:mod:`services.regional_cache.pusher`); raises on any failure."""
        reply = await self._http().post(
            f"{self.url_of(region)}/internal/v1/events",
            content=body,
            headers={HOP: self.region, "content-type": "application/x-ndjson", **self._internal},
        )
        if reply.status_code != 200:
            raise HomeUnavailable(f"region {region} answered {reply.status_code}")

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            raise HomeUnavailable("region client is not started")
        return self._client
