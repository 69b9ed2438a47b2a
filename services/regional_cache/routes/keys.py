"""Entries: PUT, GET, DELETE of one key and batchGet (api.md, "REST API")."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import ClientDisconnect

from libs.common import events
from libs.common.errors import (
    HomeUnavailable,
    InvalidRequest,
    NotCached,
    NotFound,
    OriginUnavailable,
    PreconditionFailed,
    StaleVersion,
    ValueTooLarge,
    VersionRequired,
)
from libs.common.naming import (
    MAX_BATCH_KEYS,
    NAMESPACE_RE,
    check_content_type,
    check_key,
    check_namespace,
    parse_tags,
    parse_ttl,
)
from libs.common.responses import JsonResponse
from libs.common.store import Entry, Lookup, ReadResult
from libs.common.versions import etag, parse_etag_list, parse_version
from services.regional_cache.deps import KEY_PARAM, KeyDep, NamespaceDep, RuntimeDep, raw_key
from services.regional_cache.runtime import Runtime

router = APIRouter(tags=["keys"])


KEY_PATH = f"/v1/ns/{{ns}}/keys/{KEY_PARAM}"
_DEFAULT_CT = "application/octet-stream"
# remote fills one batchGet may run at once
_BATCH_FILLS = 32
_BINARY_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
    }
}
_ERROR = {"description": "error", "content": {"application/json": {}}}


class PutResult(BaseModel):
    ns: str
    key: str
    version: int
    home_region: str
    ttl: float
    expires_at: float


class BatchGetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keys: Annotated[list[str], Field(max_length=MAX_BATCH_KEYS)]


class BatchItem(BaseModel):
    key: str
    found: bool
    version: int | None = None
    content_type: str | None = None
    value_b64: str | None = None
    # false: a miss past the request's fill budget (batch_fill_limit), not looked up
    fetched: bool = True


class BatchGetResult(BaseModel):
    items: list[BatchItem]


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ValueTooLarge(f"value is {declared} bytes, at most {limit} allowed")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ValueTooLarge(f"value exceeds {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # nobody is left to answer; nothing was stored
        raise InvalidRequest("the client disconnected before sending the whole value") from None
    return b"".join(chunks)


def _content_type(raw: str | None) -> str:
    return check_content_type(raw) if raw else _DEFAULT_CT


@router.put(
    KEY_PATH,
    response_model=PutResult,
    openapi_extra=_BINARY_BODY,
    responses={400: _ERROR, 409: _ERROR, 412: _ERROR, 413: _ERROR, 422: _ERROR, 503: _ERROR},
)
async def put_key(
    ns: NamespaceDep,
    key: KeyDep,
    request: Request,
    rt: RuntimeDep,
    ttl: Annotated[str | None, Query(description="seconds, decimal allowed")] = None,
    tags: Annotated[str | None, Query(description="comma-separated tags")] = None,
    version: Annotated[str | None, Query(description="external version")] = None,
    if_match: Annotated[str | None, Header()] = None,
    if_none_match: Annotated[str | None, Header()] = None,
    content_type: Annotated[str | None, Header()] = None,
) -> Response:
    """Store a value; the key's home region applies it and publishes its event."""
    settings = rt.settings
    requested = parse_ttl(ttl, default=0.0, max_ttl=settings.max_ttl) if ttl is not None else None
    tag_list = parse_tags(tags)
    external = parse_version(version) if version is not None else None
    ctype = _content_type(content_type)
    match = parse_etag_list(if_match) if if_match is not None else []
    none_match = parse_etag_list(if_none_match) if if_none_match is not None else []
    value = await _read_body(request, settings.max_value_bytes)
    home = rt.home_of(ns, key)
    if home != rt.region:
        return await rt.regions.forward(request, home, value)
    cfg = rt.namespace(ns)
    if external is None and cfg.versions == "source":
        raise _version_required(ns)

    expect: int | None = None
    if if_match is not None or if_none_match is not None:
        current = await rt.store.read(ns, key)
        live = current.entry.version if current.lookup is Lookup.HIT and current.entry else None
        if if_match is not None and (live is None or (match is not None and live not in match)):
            raise PreconditionFailed(
                "If-Match: the entry is absent or has another version", current_version=live
            )
        if (
            if_none_match is not None
            and live is not None
            and (none_match is None or live in none_match)
        ):
            raise PreconditionFailed("If-None-Match: the entry exists", current_version=live)
        expect = current.held_version

    effective_ttl = rt.effective_ttl(ns, requested)
    written = await rt.store.write(
        ns,
        key,
        value,
        content_type=ctype,
        ttl=effective_ttl,
        tags=tag_list,
        external_version=external,
        expect_version=expect,
        keep_after_expiry=cfg.stale_while_revalidate,
        stamps=await rt.stamper.for_write(ns, tag_list),
    )
    replicate = cfg.propagation == "replicate"
    await rt.publisher.publish(
        events.key_event(
            ns,
            key,
            written.version,
            "set",
            origin=rt.region,
            value=value if replicate else None,
            content_type=ctype,
            ttl=effective_ttl if replicate else None,
            gen=written.generation,
            tags=tag_list,
            tag_versions=written.tag_versions,
        )
    )
    body = {
        "ns": ns,
        "key": key,
        "version": written.version,
        "home_region": home,
        "ttl": round((written.expires_ms - written.written_ms) / 1000, 3),
        "expires_at": written.expires_ms / 1000,
    }
    return JsonResponse(body, headers={"ETag": etag(written.version)})


_NS_SCHEMA = {"type": "string", "pattern": f"^{NAMESPACE_RE.pattern}$"}
_GET_PARAMETERS: dict[str, Any] = {
    "parameters": [
        {"name": "ns", "in": "path", "required": True, "schema": _NS_SCHEMA},
        {
            "name": "key",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "description": "1..512 bytes of UTF-8, URL-encoded",
        },
        {
            "name": "min_version",
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": "read-your-writes",
        },
        {"name": "x-min-version", "in": "header", "required": False, "schema": {"type": "string"}},
        {"name": "if-none-match", "in": "header", "required": False, "schema": {"type": "string"}},
        {
            "name": "cache-control",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "only-if-cached: never fill; 504 not_cached on a miss",
        },
    ]
}


@router.get(
    KEY_PATH,
    response_class=Response,
    openapi_extra=_GET_PARAMETERS,
    responses={
        200: {"content": {"*/*": {}}, "description": "the value"},
        304: {"description": "not modified"},
        400: _ERROR,
        404: _ERROR,
        503: _ERROR,
        504: _ERROR,
    },
)
async def get_key(request: Request) -> Response:
    """Read from this region's copy; on a miss outside the home region, fill from home.

    The hot path of the platform: it reads the request itself instead of through
    FastAPI's parameter solving, which cost a quarter of a hit's CPU (the
    parameters are documented in ``_GET_PARAMETERS``).
    """
    rt: Runtime = request.app.state.runtime
    ns = check_namespace(request.path_params["ns"])
    key = raw_key(request.scope)
    headers_in = request.headers
    floor_raw = request.query_params.get("min_version") if request.scope["query_string"] else None
    if floor_raw is None:
        floor_raw = headers_in.get("x-min-version")
    floor = parse_version(floor_raw, what="min_version") if floor_raw is not None else 0
    if_none_match = headers_in.get("if-none-match")
    not_modified = parse_etag_list(if_none_match) if if_none_match is not None else []
    cache = "HIT"
    near = rt.near
    # a hot key's copy in this process, when it is there and new enough
    entry = near.get(ns, key) if near is not None and rt.hotkeys.is_hot(ns, key) else None
    if entry is None or entry.version < floor:
        result = await rt.store.read(ns, key)
        entry = result.entry
        if result.lookup is not Lookup.HIT or entry is None or entry.version < floor:
            rt.misses.inc()
            if "only-if-cached" in headers_in.get("cache-control", ""):
                # RFC 9111: answer from this region's copy only; never fill
                raise NotCached("no valid copy is cached in this region")
            entry, cache = await _miss(rt, ns, key, result, floor)
            if cache == "STALE":
                rt.stales.inc()
        elif rt.hotkeys.observe(ns, key) and near is not None:
            near.load(ns, key)
    else:
        rt.hotkeys.observe(ns, key)
    if cache == "HIT":
        rt.hits.inc()
        cfg = rt.namespace(ns)
        if cfg.xfetch_beta and cfg.origin is not None:
            rt.filler.early_refresh(ns, key, rt.home_of(ns, key), cfg, entry)
    headers = {
        "X-Cache": cache,
        "X-Cache-Region": rt.region,
        "Age": str(max(0, int(time.time() - entry.written_ms / 1000))),
    }
    if entry.version:  # 0: no version is known (an origin's answer, cached or not)
        headers["ETag"] = etag(entry.version)
    if not_modified is None or entry.version in not_modified:
        return Response(status_code=304, headers=headers)
    # set the header directly: Response(media_type=...) would append a charset
    headers["Content-Type"] = entry.content_type
    return Response(entry.value, headers=headers)


async def _miss(
    rt: Runtime, ns: str, key: str, result: ReadResult, floor: int
) -> tuple[Entry, str]:
    """Serve a miss: the stale copy while one refresh runs, else a fill from the home
    region or the origin; returns the entry and its X-Cache value."""
    cfg = rt.namespace(ns)
    home = rt.home_of(ns, key)
    stale = result.entry if result.lookup is Lookup.EXPIRED else None
    if stale is not None and stale.version < floor:
        stale = None
    if result.lookup is Lookup.NEGATIVE and not floor:
        raise NotFound("key not found (the origin answered 404 recently)")
    if stale is not None and cfg.stale_while_revalidate:
        rt.filler.refresh(ns, key, home, cfg)
        return stale, "STALE"
    if result.lookup is Lookup.TOMBSTONE and result.held_version >= floor:
        raise NotFound("key not found")
    # with the home away, a plain read may get the origin's answer served uncached; not a
    # read of one's own writes, nor a key this region knows a newer version of exists:
    # nothing proves the origin's answer is that new
    uncached = not floor and result.lookup is not Lookup.SUPERSEDED
    try:
        entry = await rt.filler.fill(ns, key, home, cfg, uncached=uncached, floor=floor)
    except (HomeUnavailable, OriginUnavailable):
        if stale is not None:
            return stale, "STALE"  # stale-if-error
        raise
    if entry is None:
        raise NotFound("key not found")
    if entry.version < floor:
        raise NotFound(f"no copy at version {floor} or newer", held_version=entry.version)
    return entry, "MISS"


@router.delete(
    KEY_PATH,
    status_code=204,
    response_class=Response,
    responses={400: _ERROR, 409: _ERROR, 503: _ERROR},
)
async def delete_key(
    ns: NamespaceDep,
    key: KeyDep,
    request: Request,
    rt: RuntimeDep,
    version: Annotated[str | None, Query(description="external version of the delete")] = None,
) -> Response:
    """Delete everywhere: a versioned tombstone at home, then its event."""
    external = parse_version(version) if version is not None else None
    home = rt.home_of(ns, key)
    if home != rt.region:
        return await rt.regions.forward(request, home, b"")
    if external is None and rt.namespace(ns).versions == "source":
        raise _version_required(ns)
    # the generation this region holds, without a clock floor: a deletion stamped too
    # low is voided early by an invalidation (its key is filled again), never kept late
    generation, _ = await rt.store.stamps(ns, (), clock=False)
    applied, held = await rt.store.tombstone(ns, key, external, generation=generation)
    if external is not None and not applied:
        raise StaleVersion(
            f"version {external} is not newer than the held version {held}",
            current_version=held,
        )
    await rt.publisher.publish(
        events.key_event(ns, key, held, "delete", origin=rt.region, gen=generation)
    )
    return Response(status_code=204, headers={"ETag": etag(held)})


def _version_required(ns: str) -> VersionRequired:
    return VersionRequired(
        f"namespace {ns} takes its versions from its system of record: write with "
        "version=<the record's version> (a write without one could outrank the record's "
        "later changes)"
    )


@router.post(
    "/v1/ns/{ns}/keys:batchGet",
    response_model=BatchGetResult,
    responses={400: _ERROR, 413: _ERROR, 503: _ERROR},
)
async def batch_get(ns: NamespaceDep, body: BatchGetRequest, rt: RuntimeDep) -> JsonResponse:
    """Read up to 1000 keys of one namespace; items come back in request order.

    Misses are filled (from the key's home region or the origin), ``batch_fill_limit``
    of them at most, so one request cannot turn into a thousand origin requests; a miss
    past the limit comes back ``"found": false, "fetched": false``: not an answer about
    the key, ask again (a single GET, or a smaller batch)."""
    for key in body.keys:
        check_key(key)
    results = await rt.store.read_many(ns, body.keys) if body.keys else []
    entries = [r.entry if r.lookup is Lookup.HIT else None for r in results]
    hits = sum(1 for e in entries if e is not None)
    misses = [i for i, e in enumerate(entries) if e is None]
    if hits:
        rt.hits.inc(hits)
    if misses:
        rt.misses.inc(len(misses))
        budget = rt.settings.batch_fill_limit
        unfetched = set(misses[budget:])
        misses = misses[:budget]
        limit = asyncio.Semaphore(_BATCH_FILLS)

        async def fill(i: int) -> None:
            async with limit:
                with contextlib.suppress(NotFound):
                    entries[i], _ = await _miss(rt, ns, body.keys[i], results[i], 0)

        await asyncio.gather(*(fill(i) for i in misses))
    else:
        unfetched = set()
    items = [
        _item(key, entry, fetched=i not in unfetched)
        for i, (key, entry) in enumerate(zip(body.keys, entries, strict=True))
    ]
    return JsonResponse({"items": items})


def _item(key: str, entry: Entry | None, *, fetched: bool = True) -> dict[str, Any]:
    if entry is None:
        return {
            "key": key,
            "found": False,
            "version": None,
            "content_type": None,
            "value_b64": None,
            "fetched": fetched,
        }
    return {
        "key": key,
        "found": True,
        "version": entry.version,
        "content_type": entry.content_type,
        "value_b64": base64.b64encode(entry.value).decode("ascii"),
        "fetched": True,
    }
