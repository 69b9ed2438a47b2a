"""Region-to-region endpoints (not part of the public API)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from libs.common import events
from libs.common.apply import apply_events
from libs.common.errors import HomeUnavailable, InvalidEvent, InvalidRequest
from libs.common.naming import MAX_WARM_KEYS, check_key, check_namespace, parse_tags
from libs.common.responses import JsonResponse
from libs.common.store import Entry, Lookup
from libs.common.versions import parse_version
from services.regional_cache.deps import KEY_PARAM, KeyDep, NamespaceDep, RuntimeDep
from services.regional_cache.fill import served_uncached
from services.regional_cache.probe import MAX_PROBE_KEYS, probe_many
from services.regional_cache.pusher import MAX_PUSH_BATCH, MAX_PUSH_REQUEST_BYTES

router = APIRouter(include_in_schema=False)

# copies one warm request fetches from the source at once: few, so a warm-up batch
# never crowds out the region's own requests
_WARM_CONCURRENCY = 4


class WarmRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str
    ns: str
    keys: Annotated[list[str], Field(max_length=MAX_WARM_KEYS)]


@router.get(f"/internal/v1/ns/{{ns}}/entries/{KEY_PARAM}")
async def get_entry(
    ns: NamespaceDep,
    key: KeyDep,
    rt: RuntimeDep,
    fill: Annotated[str | None, Query()] = None,
    min_version: Annotated[str | None, Query()] = None,
) -> Response:
    """The valid local copy with everything a remote fill needs to install it safely.

    With ``fill=1``, the key's home fills a key it holds no valid copy of (or, with
    ``min_version``, only an older one) from the namespace's origin first (its own miss
    path: single flight, lease, the home's versions), so the asking region never mints
    a version of its own. A deleted key is not filled."""
    floor = parse_version(min_version, what="min_version") if min_version else 0
    result = await rt.store.read(ns, key)
    entry: Entry | None = result.entry if result.lookup is Lookup.HIT else None
    if entry is not None and entry.version < floor:
        entry = None
    cfg = rt.namespace(ns)
    if (
        entry is None
        and fill
        and cfg.origin is not None
        and result.lookup is not Lookup.TOMBSTONE
        # a remembered 404 answers, unless the read asks for a version that exists
        and (result.lookup is not Lookup.NEGATIVE or floor)
        and rt.home_of(ns, key) == rt.region
    ):
        entry = await rt.filler.fill(ns, key, rt.region, cfg)
        if entry is not None and served_uncached(entry):
            entry = None  # served but not cached (no-store): nothing to copy
        if entry is None:
            result = await rt.store.read(ns, key)
    if entry is None:
        return JsonResponse(
            {
                "error": {
                    "code": "not_found",
                    "message": "no valid copy",
                    "lookup": result.lookup.value,
                }
            },
            status_code=404,
            headers={"X-Version": str(result.held_version)},
        )
    return Response(
        entry.value,
        headers={
            "Content-Type": entry.content_type,
            "X-Version": str(entry.version),
            "X-Written-Ms": str(entry.written_ms),
            "X-Expires-Ms": str(entry.expires_ms),
            "X-Generation": str(entry.generation),
            "X-Tags": ",".join(entry.tags),
            "X-Tag-Versions": ",".join(str(v) for v in entry.tag_versions),
        },
    )


class ProbeItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ns: str
    key: str


class ProbeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: Annotated[list[ProbeItem], Field(max_length=MAX_PROBE_KEYS)]


@router.post("/internal/v1/probe")
async def probe(body: ProbeRequest, rt: RuntimeDep) -> JsonResponse:
    """What this region would serve a client for each key, with no fill, no refresh and
    no hot-key count (services/regional_cache/probe.py): the meter's read."""
    items = [(check_namespace(i.ns), check_key(i.key)) for i in body.items]
    return JsonResponse({"region": rt.region, "items": await probe_many(rt, items)})


@router.get(f"/internal/v1/ns/{{ns}}/probe/{KEY_PARAM}")
async def probe_one(ns: NamespaceDep, key: KeyDep, rt: RuntimeDep) -> JsonResponse:
    """One key's :func:`probe`."""
    found = await probe_many(rt, [(ns, key)])
    return JsonResponse({"region": rt.region, **found[0]})


@router.post("/internal/v1/events")
async def apply_pushed_events(request: Request, rt: RuntimeDep) -> Response:
    """Apply events another region pushed (one encoded event per line), at once and in
    one round trip, exactly as a relay would (idempotent by version: the same events
    still arrive by Kafka). Lines that are not valid events are counted and skipped;
    the relays dead-letter them when they come by Kafka."""
    body = await request.body()
    if len(body) > MAX_PUSH_REQUEST_BYTES:
        raise InvalidRequest(f"at most {MAX_PUSH_REQUEST_BYTES} bytes of events a request")
    batch: list[events.Event] = []
    invalid = 0
    limits = rt.settings.event_limits()
    for line in body.split(b"\n"):
        if not line.strip():
            continue
        try:
            batch.append(events.decode(line, limits))
        except InvalidEvent:
            invalid += 1
    if len(batch) > MAX_PUSH_BATCH:
        raise InvalidRequest(f"at most {MAX_PUSH_BATCH} events a request")
    results = await apply_events(rt.store, batch)
    applied = sum(1 for r in results if r is True)
    refused = sum(1 for r in results if not isinstance(r, bool))
    counts = {"applied": applied, "stale": len(results) - applied - refused}
    counts["invalid"] = invalid + refused
    for outcome, n in counts.items():
        if n:
            rt.metrics.pushed_events.labels(rt.region, outcome).inc(n)
    return JsonResponse(counts)


@router.get("/internal/v1/ns/{ns}/stamps")
async def get_stamps(
    ns: NamespaceDep, rt: RuntimeDep, tags: Annotated[str | None, Query()] = None
) -> JsonResponse:
    """The stamps an entry of ``ns`` written now gets (for a key homed in another region of
    a ``hash`` namespace); only the namespace's home answers."""
    if rt.home_of(ns, None) != rt.region:
        raise HomeUnavailable(
            f"{rt.region} is not the home of namespace {ns}: check that every region runs "
            "the same config",
            home_region=rt.home_of(ns, None),
        )
    generation, versions = await rt.store.stamps(ns, parse_tags(tags))
    return JsonResponse({"generation": generation, "tag_versions": list(versions)})


@router.get("/internal/v1/hot")
async def hot_keys(
    rt: RuntimeDep,
    top: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ns: Annotated[str | None, Query()] = None,
) -> JsonResponse:
    """This region's hottest keys (of one namespace), hottest first (decaying read
    estimates)."""
    ranking = await rt.ranking.read(top, None if ns is None else check_namespace(ns))
    return JsonResponse(
        {
            "region": rt.region,
            "keys": [{"ns": ns, "key": key, "score": score} for ns, key, score in ranking],
        }
    )


@router.post("/internal/v1/warm")
async def warm(body: WarmRequest, rt: RuntimeDep) -> JsonResponse:
    """Copy ``keys`` from the ``source`` region's valid copies into this region, each only
    if nothing newer is known here (the same versioned fill as a remote fill)."""
    if body.source == rt.region or body.source not in rt.platform.platform.regions:
        raise InvalidRequest(f"source must be another region of the platform, not {body.source!r}")
    ns = check_namespace(body.ns)
    for key in body.keys:
        check_key(key)
    keep = rt.namespace(ns).stale_while_revalidate
    limit = asyncio.Semaphore(_WARM_CONCURRENCY)

    async def one(key: str) -> dict[str, Any]:
        async with limit:
            fetched = await rt.regions.fetch_entry(body.source, ns, key)
            if fetched.entry is None:
                return {"key": key, "installed": False, "version": None}
            installed, held = await rt.store.fill(ns, key, fetched.entry, keep_after_expiry=keep)
            return {"key": key, "installed": installed, "version": held}

    items = await asyncio.gather(*(one(key) for key in body.keys))
    return JsonResponse(
        {
            "installed": sum(1 for item in items if item["installed"]),
            "items": items,
        }
    )
