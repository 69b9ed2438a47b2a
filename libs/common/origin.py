"""Read-through origins: ``GET <origin with {key} filled>`` on a miss (api.md, "Origins").

What an origin answer means:

* 200: the value, its ``Content-Type``, its version from ``ETag: "<int>"``
  (weak allowed) or ``X-Version: <int>`` when it is an integer in
  ``[1, 2**53 - 1]`` (else ``None``: the platform assigns one), and its TTL
  from ``Cache-Control`` (``s-maxage`` over ``max-age``; ``no-store``,
  ``no-cache``, ``private`` or ``max-age=0`` give ``0.0``: do not cache).
* 404: the key is absent (``found=False``), cached as absent by the caller.
* Anything else is an origin failure, raised as :class:`OriginUnavailable` and
  nothing else: a timeout, a connection error, a 5xx, a body larger than
  ``max_value_bytes``, a redirect or any other status.

Failures that may pass on retry (connection errors, timeouts, 502/503/504)
are retried at most ``retries`` times with exponential backoff and full
jitter, each attempt asking the origin's circuit breaker first; an open
breaker fails fast. A fetch holds one of the ``max_concurrency`` request slots
of the process across its attempts (waiting at most ``timeout`` for one), and
``timeout`` bounds each attempt: a fetch never takes longer than
:attr:`OriginClient.max_fetch_seconds`, ``(retries + 2) * timeout`` plus the
backoff sleeps.

Every attempt is counted in ``mrcache_origin_requests_total{ns,outcome}``
with outcome ``found``, ``absent``, ``error``, ``timeout`` or ``rejected``
(breaker open or no request slot in time: the origin was not asked).
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import httpx

from libs.common.breaker import BreakerSettings, CircuitBreaker
from libs.common.errors import InvalidContentType, InvalidVersion, OriginUnavailable
from libs.common.lifecycle import AsyncService
from libs.common.metrics import Metrics
from libs.common.naming import check_content_type, path_segment
from libs.common.versions import parse_version

__all__ = ["OriginClient", "OriginResult", "check_template", "origin_of"]

log = logging.getLogger(__name__)

KEY_PLACEHOLDER = "{key}"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_RETRIABLE_STATUS = frozenset({502, 503, 504})
_NO_STORE = frozenset({"no-store", "no-cache", "private"})

Outcome = Literal["found", "absent", "error", "timeout", "rejected"]


@dataclass(frozen=True, slots=True)
class OriginResult:
    found: bool  # False = the origin answered 404
    value: bytes = b""
    content_type: str = DEFAULT_CONTENT_TYPE
    version: int | None = None  # from ETag: "<int>" (or W/"<int>") or X-Version: <int>
    # from Cache-Control: max-age=N (s-maxage wins); 0.0 means "do not cache"
    max_age: float | None = None


def check_template(template: str) -> str:
    """Validate a namespace's ``origin`` URL template; return it unchanged.

    It must be an absolute ``http``/``https`` URL with a host, and ``{key}``
    must appear in its path or query (never in the host: a key must not pick
    which server is asked).
    """
    if not isinstance(template, str) or KEY_PLACEHOLDER not in template:
        raise ValueError(f"origin {template!r} must contain {KEY_PLACEHOLDER}")
    try:
        parts = urlsplit(template)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"origin {template!r} is not a valid URL: {exc}") from None
    if parts.scheme not in _DEFAULT_PORTS:
        raise ValueError(f"origin {template!r} must be an http:// or https:// URL")
    if not parts.hostname or KEY_PLACEHOLDER in parts.netloc:
        raise ValueError(f"origin {template!r} needs a host, and {KEY_PLACEHOLDER} not in it")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"origin {template!r} must not carry credentials in the URL")
    if port == 0:
        raise ValueError(f"origin {template!r} has an invalid port")
    if parts.fragment:
        raise ValueError(f"origin {template!r} must not have a #fragment")
    return template


def origin_of(template: str) -> str:
    """The breaker identity of a template: ``scheme://host:port``."""
    parts = urlsplit(template)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)
    return f"{parts.scheme}://{host}:{port}"


def parse_max_age(cache_control: str) -> float | None:
    """Seconds an origin answer may be cached, ``0.0`` for never, ``None`` if unsaid."""
    max_age: float | None = None
    s_maxage: float | None = None
    for directive in cache_control.split(","):
        name, _, raw = directive.strip().partition("=")
        name = name.strip().lower()
        if name in _NO_STORE:
            return 0.0
        if name in ("max-age", "s-maxage"):
            text = raw.strip().strip('"')
            if not (text.isascii() and text.isdigit()):
                continue  # malformed: ignored, like an absent directive
            if name == "max-age":
                max_age = float(int(text))
            else:
                s_maxage = float(int(text))
    return s_maxage if s_maxage is not None else max_age


def parse_origin_version(headers: httpx.Headers) -> int | None:
    """``ETag: "<int>"`` (weak allowed), else ``X-Version: <int>``; else ``None``."""
    for name in ("etag", "x-version"):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            return parse_version(raw)
        except InvalidVersion:
            continue
    return None


def _content_type(raw: str | None) -> str:
    # the same rule as a PUT's Content-Type; an origin's odd one is not kept
    try:
        return check_content_type(raw) if raw else DEFAULT_CONTENT_TYPE
    except InvalidContentType:
        return DEFAULT_CONTENT_TYPE


class _AttemptFailed(Exception):
    """One attempt failed; ``retriable`` when the same GET may succeed again."""

    def __init__(
        self, reason: str, outcome: Outcome, *, retriable: bool, origin_fault: bool = True
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.outcome: Outcome = outcome
        self.retriable = retriable
        # False when the origin answered properly but unusably (a 403, a huge
        # body): the breaker counts only failures that say the origin is unwell
        self.origin_fault = origin_fault


class OriginClient(AsyncService):
    """Fetches keys from namespace origins over one pooled HTTP client.

    One :class:`CircuitBreaker` per origin (``scheme://host:port``) and one
    bound on concurrent origin requests per process. Use ``start()`` /
    ``stop()`` or ``async with``.
    """

    def __init__(
        self,
        metrics: Metrics,
        *,
        timeout: float = 2.0,
        connect_timeout: float = 1.0,
        max_concurrency: int = 64,
        retries: int = 2,
        backoff: float = 0.05,
        breaker: BreakerSettings | None = None,
        max_value_bytes: int = 1024 * 1024,
    ) -> None:
        if timeout <= 0 or connect_timeout <= 0:
            raise ValueError("origin timeouts must be positive")
        if max_concurrency < 1 or retries < 0 or backoff < 0 or max_value_bytes < 0:
            raise ValueError("invalid origin client limits")
        self.metrics = metrics
        self.timeout = timeout
        self.connect_timeout = min(connect_timeout, timeout)
        self.max_concurrency = max_concurrency
        self.retries = retries
        self.backoff = backoff
        self.breaker_settings = breaker or BreakerSettings()
        self.max_value_bytes = max_value_bytes
        self._slots = asyncio.Semaphore(max_concurrency)
        self._breakers: dict[str, CircuitBreaker] = {}
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        if self._client is not None:
            return
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
            limits=httpx.Limits(
                max_connections=self.max_concurrency,
                max_keepalive_connections=self.max_concurrency,
            ),
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": "mrcache-origin/1", "Accept": "*/*"},
        )

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def breaker(self, template: str) -> CircuitBreaker:
        """The circuit breaker of the origin ``template`` points at (created on first use)."""
        origin = origin_of(template)
        breaker = self._breakers.get(origin)
        if breaker is None:
            breaker = CircuitBreaker(origin, self.breaker_settings, metrics=self.metrics)
            self._breakers[origin] = breaker
        return breaker

    @property
    def max_fetch_seconds(self) -> float:
        """The longest a :meth:`fetch` can take: slot wait, every attempt, every backoff."""
        backoffs = sum(self.backoff * 2.0**attempt for attempt in range(self.retries))
        return self.timeout * (self.retries + 2) + backoffs

    async def fetch(self, ns: str, template: str, key: str) -> OriginResult:
        """``GET`` the key from the origin; :class:`OriginUnavailable` on any failure."""
        client = self._client
        if client is None:
            raise RuntimeError("OriginClient.start() was not called")
        url = template.replace(KEY_PLACEHOLDER, path_segment(key))
        try:
            breaker = self.breaker(template)
        except ValueError:  # check_template() at config time keeps this from happening
            self._count(ns, "error")
            raise OriginUnavailable(f"the origin of namespace {ns!r} is not a valid URL") from None
        # the breaker first: an open one fails fast, without queueing for a slot
        if not breaker.allow():
            self._count(ns, "rejected")
            raise OriginUnavailable(
                f"the origin of namespace {ns!r} is failing: its circuit breaker is open"
            )
        try:
            async with asyncio.timeout(self.timeout):
                await self._slots.acquire()
        except TimeoutError:
            breaker.release()
            self._count(ns, "rejected")
            raise OriginUnavailable(
                f"too many origin requests in flight: no slot free within {self.timeout:g} s"
            ) from None
        except BaseException:
            breaker.release()
            raise
        # the slot is held across retries, so retries never add to the origin's load
        try:
            return await self._attempts(client, ns, key, url, breaker)
        finally:
            self._slots.release()

    async def _attempts(
        self, client: httpx.AsyncClient, ns: str, key: str, url: str, breaker: CircuitBreaker
    ) -> OriginResult:
        attempt = 0
        while True:
            try:
                async with asyncio.timeout(self.timeout):
                    result = await self._get(client, url)
            except TimeoutError:
                failure = _AttemptFailed(
                    f"timed out after {self.timeout:g} s", "timeout", retriable=True
                )
            except _AttemptFailed as exc:
                failure = exc
            except BaseException:
                # cancelled: no outcome to report, but a half-open probe slot comes back
                breaker.release()
                raise
            else:
                breaker.record(True)
                self._count(ns, "found" if result.found else "absent")
                return result
            # an answer that is proper HTTP but unusable says nothing about the origin's health
            breaker.record(not failure.origin_fault)
            self._count(ns, failure.outcome)
            log.warning(
                "origin request failed",
                extra={
                    "ns": ns,
                    "key": key,
                    "origin": breaker.name,
                    "reason": failure.reason,
                    "attempt": attempt + 1,
                },
            )
            tries = f" after {attempt + 1} attempts" if attempt else ""
            if not failure.retriable or attempt >= self.retries:
                raise OriginUnavailable(
                    f"the origin of namespace {ns!r} failed{tries}: {failure.reason}"
                )
            # full jitter: uniform in [0, backoff * 2**attempt]
            await asyncio.sleep(random.uniform(0, self.backoff * 2.0**attempt))
            attempt += 1
            if not breaker.allow():
                self._count(ns, "rejected")
                raise OriginUnavailable(
                    f"the origin of namespace {ns!r} failed{tries}: {failure.reason}; "
                    "its circuit breaker is now open"
                )

    async def _get(self, client: httpx.AsyncClient, url: str) -> OriginResult:
        try:
            async with client.stream("GET", url) as response:
                status = response.status_code
                if status == 404:
                    return OriginResult(found=False)
                if status != 200:
                    raise _AttemptFailed(
                        f"HTTP {status}",
                        "error",
                        retriable=status in _RETRIABLE_STATUS,
                        origin_fault=status >= 500 or status == 429,
                    )
                value = await self._read_body(response)
                headers = response.headers
                cache_control = headers.get("cache-control")
                return OriginResult(
                    found=True,
                    value=value,
                    content_type=_content_type(headers.get("content-type")),
                    version=parse_origin_version(headers),
                    max_age=None if cache_control is None else parse_max_age(cache_control),
                )
        except httpx.TimeoutException as exc:
            raise _AttemptFailed(
                f"timed out ({type(exc).__name__})", "timeout", retriable=True
            ) from None
        except httpx.TransportError as exc:
            retriable = not isinstance(exc, httpx.UnsupportedProtocol)
            raise _AttemptFailed(
                f"connection failed ({type(exc).__name__}: {exc})", "error", retriable=retriable
            ) from None
        except httpx.HTTPError as exc:  # a body that fails to decode, an invalid URL
            raise _AttemptFailed(
                f"bad response ({type(exc).__name__}: {exc})", "error", retriable=False
            ) from None
        except (_AttemptFailed, TimeoutError):
            raise
        except Exception as exc:  # never leak anything but OriginUnavailable to callers
            log.exception("unexpected origin client error", extra={"url": url})
            raise _AttemptFailed(
                f"unexpected error ({type(exc).__name__})", "error", retriable=False
            ) from None

    async def _read_body(self, response: httpx.Response) -> bytes:
        limit = self.max_value_bytes
        declared = response.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise _AttemptFailed(
                f"value of {int(declared)} bytes exceeds the {limit} byte limit",
                "error",
                retriable=False,
                origin_fault=False,
            )
        chunks: list[bytes] = []
        size = 0
        # decoded bytes: a compressed body is held to the limit after inflating
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise _AttemptFailed(
                    f"value exceeds the {limit} byte limit",
                    "error",
                    retriable=False,
                    origin_fault=False,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _count(self, ns: str, outcome: Outcome) -> None:
        self.metrics.origin_requests.labels(ns, outcome).inc()
