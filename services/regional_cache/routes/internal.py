"""Region-to-region endpoints (not part of the public API)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from libs.common.responses import JsonResponse
from libs.common.store import Lookup
from services.regional_cache.deps import KEY_PARAM, KeyDep, NamespaceDep, RuntimeDep

router = APIRouter(include_in_schema=False)


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
