"""Region-to-region endpoints (not part of the public API)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from libs.common.errors import InvalidRequest
from libs.common.naming import MAX_WARM_KEYS, check_key, check_namespace
from libs.common.responses import JsonResponse
from libs.common.store import Lookup
from services.regional_cache.deps import KEY_PARAM, KeyDep, NamespaceDep, RuntimeDep

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
async def get_entry(ns: NamespaceDep, key: KeyDep, rt: RuntimeDep) -> Response:
    """The valid local copy with everything a remote fill needs to install it safely."""
    result = await rt.store.read(ns, key)
    entry = result.entry
    if result.lookup is not Lookup.HIT or entry is None:
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
