"""Requests and responses of the REST API (api.md), without I/O.

A :class:`Spec` is a request that does not know its region yet: the client
turns it into an :class:`httpx.Request` for whichever region it picks.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from libs.client import errors
from libs.client.models import (
    Info,
    Item,
    Namespace,
    NamespaceInvalidation,
    PutResult,
    TagInvalidation,
)

T = TypeVar("T")

BATCH_LIMIT = 1000  # keys per batchGet request (api.md)
_FAILOVER_STATUSES = frozenset({502, 503, 504})
# a 502 about the namespace's origin says nothing about the region: all regions share it
_NOT_THE_REGION = frozenset({"origin_unavailable"})
_BY_CODE: dict[str, type[errors.ApiError]] = {
    "stale_version": errors.StaleVersion,
    "precondition_failed": errors.PreconditionFailed,
    "value_too_large": errors.ValueTooLarge,
    "origin_unavailable": errors.OriginUnavailable,
    "unauthorized": errors.Unauthorized,
    "forbidden": errors.Forbidden,
}
_BY_STATUS: dict[int, type[errors.ApiError]] = {
    400: errors.InvalidInput,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    409: errors.StaleVersion,
    412: errors.PreconditionFailed,
    413: errors.ValueTooLarge,
    422: errors.InvalidInput,
}


@dataclass(frozen=True, slots=True)
class Spec:
    """Method, escaped path, query, headers and body of one API request."""

    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    content: bytes | None = None

    def request(
        self, base_url: str, headers: Mapping[str, str], timeout: httpx.Timeout
    ) -> httpx.Request:
        return httpx.Request(
            self.method,
            base_url + self.path,
            params=self.params,
            headers={**headers, **dict(self.headers)},
            content=self.content,
            # a request built by hand gets no timeout from the client: carry it along
            extensions={"timeout": timeout.as_dict()},
        )


def _segment(text: str) -> str:
    # keys may hold "/", "%", "?" or spaces: every one travels escaped; a key of dots
    # alone too, or httpx would resolve it as a relative-path step (".." -> the parent)
    quoted = quote(text, safe="")
    return quoted.replace(".", "%2E") if quoted.strip(".") == "" else quoted


def _key_path(ns: str, key: str) -> str:
    return f"/v1/ns/{_segment(ns)}/keys/{_segment(key)}"


HEALTH = Spec("GET", "/healthz")
INFO = Spec("GET", "/v1/info")


def get_spec(ns: str, key: str, min_version: int | None) -> Spec:
    params = (("min_version", str(min_version)),) if min_version is not None else ()
    return Spec("GET", _key_path(ns, key), params)


@dataclass(frozen=True, slots=True)
class PutOptions:
    """The optional parts of a PUT, in the order of the clients' ``put`` signature."""

    ttl: float | None = None
    tags: Sequence[str] = ()
    version: int | None = None
    if_match: int | None = None
    if_none_match: bool = False
    content_type: str | None = None

    def spec(self, ns: str, key: str, value: bytes) -> Spec:
        if isinstance(self.tags, str):
            raise TypeError("tags must be a sequence of tag names, not one string")
        params: list[tuple[str, str]] = []
        if self.ttl is not None:
            params.append(("ttl", repr(float(self.ttl))))
        if self.tags:
            params.append(("tags", ",".join(self.tags)))
        if self.version is not None:
            params.append(("version", str(self.version)))
        headers: list[tuple[str, str]] = []
        if self.content_type is not None:
            headers.append(("Content-Type", self.content_type))
        if self.if_match is not None:
            headers.append(("If-Match", f'"{self.if_match}"'))
        if self.if_none_match:
            headers.append(("If-None-Match", "*"))
        return Spec("PUT", _key_path(ns, key), tuple(params), tuple(headers), bytes(value))


def delete_spec(ns: str, key: str) -> Spec:
    return Spec("DELETE", _key_path(ns, key))


def batch_spec(ns: str, keys: Sequence[str]) -> Spec:
    body = json.dumps({"keys": list(keys)}).encode()
    return Spec(
        "POST",
        f"/v1/ns/{_segment(ns)}/keys:batchGet",
        headers=(("Content-Type", "application/json"),),
        content=body,
    )


def invalidate_namespace_spec(ns: str) -> Spec:
    return Spec("POST", f"/v1/ns/{_segment(ns)}/invalidate")


def invalidate_tag_spec(ns: str, tag: str) -> Spec:
    return Spec("POST", f"/v1/ns/{_segment(ns)}/tags/{_segment(tag)}/invalidate")


def namespace_spec(ns: str) -> Spec:
    return Spec("GET", f"/v1/ns/{_segment(ns)}")


def chunks(keys: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(keys), BATCH_LIMIT):
        yield keys[start : start + BATCH_LIMIT]


def failure(response: httpx.Response | None, error: Exception | None) -> str | None:
    """Why this answer means the region is failing (a reason to fail over), else ``None``.

    A connection error, a timeout or a 502/503/504 is; any other answer,
    4xx included, is the region speaking for the request.
    """
    if error is not None:
        return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    assert response is not None
    if response.status_code not in _FAILOVER_STATUSES:
        return None
    code, _, _ = _error_body(response)
    if code in _NOT_THE_REGION:
        return None
    return f"{response.status_code} {code or 'error'}"


def etag_version(value: str | None) -> int | None:
    """``"<int>"`` (also weak ``W/"<int>"``) as an int; ``None`` if absent or not one."""
    if not value:
        return None
    text = value.strip().removeprefix("W/").strip('"')
    return int(text) if text.isdigit() and len(text) <= 16 else None


def parse_item(response: httpx.Response) -> Item:
    h = response.headers
    version = etag_version(h.get("etag"))
    if version is None:
        raise _invalid(response, "the answer has no ETag version")
    age = h.get("age")
    return Item(
        value=response.content,
        version=version,
        content_type=h.get("content-type", "application/octet-stream"),
        cache=h.get("x-cache"),
        region=h.get("x-cache-region"),
        age=int(age) if age is not None and age.isdigit() else None,
    )


def parse_put(response: httpx.Response) -> PutResult:
    return _parse(
        response,
        "PUT",
        lambda body: PutResult(
            ns=str(body["ns"]),
            key=str(body["key"]),
            version=int(body["version"]),
            home_region=str(body["home_region"]),
            ttl=float(body["ttl"]),
            expires_at=float(body["expires_at"]),
            forwarded_by=response.headers.get("x-cache-forwarded"),
        ),
    )


def parse_batch(response: httpx.Response, region: str) -> list[tuple[str, Item | None, bool]]:
    """``(key, item or None, fetched)`` in request order; items carry the region asked.
    ``fetched`` is false for a miss the server did not look up (past its fill budget)."""

    def item(raw: dict[str, Any]) -> Item | None:
        if not raw["found"]:
            return None
        return Item(
            value=base64.b64decode(raw["value_b64"], validate=True),
            version=int(raw["version"]),
            content_type=str(raw["content_type"]),
            cache=None,
            region=region,
            age=None,
        )

    return _parse(
        response,
        "batchGet",
        lambda body: [
            (str(raw["key"]), item(raw), raw.get("fetched", True) is not False)
            for raw in body["items"]
        ],
    )


def parse_namespace(response: httpx.Response) -> Namespace:
    return _parse(
        response,
        "namespace",
        lambda body: Namespace(
            ns=str(body["ns"]),
            home_region=str(body["home_region"]),
            configured=bool(body.get("configured", False)),
            default_ttl=float(body["default_ttl"]),
            propagation=str(body.get("propagation", "invalidate")),
            settings=body,
        ),
    )


def parse_info(response: httpx.Response) -> Info:
    return _parse(
        response,
        "info",
        lambda body: Info(
            region=str(body["region"]),
            regions={str(k): (str(v) if v else None) for k, v in body["regions"].items()},
            version=None if body.get("version") is None else str(body["version"]),
            settings=body,
        ),
    )


def parse_namespace_invalidation(response: httpx.Response) -> NamespaceInvalidation:
    return _parse(
        response,
        "invalidation",
        lambda b: NamespaceInvalidation(str(b["ns"]), int(b["generation"])),
    )


def parse_tag_invalidation(response: httpx.Response) -> TagInvalidation:
    return _parse(
        response,
        "invalidation",
        lambda b: TagInvalidation(str(b["ns"]), str(b["tag"]), int(b["version"])),
    )


def error_from(response: httpx.Response) -> errors.MrcacheClientError:
    """The SDK error for an error answer, by its ``error.code``, else its status."""
    code, message, details = _error_body(response)
    status = response.status_code
    if code == "home_unavailable":
        return errors.HomeUnavailable(
            message or "the home region is unreachable",
            home_region=details.get("home_region"),
            status=status,
            details=details,
        )
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status) or errors.ApiError
    text = message or response.reason_phrase or "error"
    return cls(text, status=status, code=code or f"http_{status}", details=details)


def _error_body(response: httpx.Response) -> tuple[str | None, str | None, dict[str, Any]]:
    body: Any = None
    with contextlib.suppress(ValueError):
        body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, None, {}
    code = error.get("code")
    message = error.get("message")
    details = {k: v for k, v in error.items() if k not in ("code", "message")}
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else None,
        details,
    )


def _parse(response: httpx.Response, what: str, build: Callable[[dict[str, Any]], T]) -> T:
    body = _json(response)
    try:
        return build(body)
    except (KeyError, TypeError, ValueError, AttributeError):  # binascii.Error is a ValueError
        raise _invalid(response, f"the {what} answer lacks its fields") from None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise _invalid(response, "the answer is not JSON") from None
    if not isinstance(body, dict):
        raise _invalid(response, "the answer is not a JSON object")
    return body


def _invalid(response: httpx.Response, message: str) -> errors.ApiError:
    return errors.ApiError(message, status=response.status_code, code="invalid_response")
