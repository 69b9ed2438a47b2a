"""Namespace-wide operations: O(1) namespace and tag invalidation, and configuration."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from libs.common import events
from libs.common.responses import JsonResponse
from services.regional_cache.auth import privileged
from services.regional_cache.deps import NamespaceDep, RuntimeDep, TagDep
from services.regional_cache.routes.keys import _ERROR

router = APIRouter(tags=["namespaces"])


@router.post("/v1/ns/{ns}/invalidate", status_code=202, responses={400: _ERROR, 503: _ERROR})
async def invalidate_namespace(ns: NamespaceDep, request: Request, rt: RuntimeDep) -> Response:
    """Raise the namespace generation: every entry written before it is gone."""
    home = rt.home_of(ns, None)
    if home != rt.region:
        return await rt.regions.forward(request, home, b"")
    _, generation = await rt.store.bump_namespace(ns)
    await rt.publisher.publish(events.namespace_event(ns, generation, origin=rt.region))
    return JsonResponse({"ns": ns, "generation": generation}, status_code=202)


@router.post(
    "/v1/ns/{ns}/tags/{tag}/invalidate", status_code=202, responses={400: _ERROR, 503: _ERROR}
)
async def invalidate_tag(
    ns: NamespaceDep, tag: TagDep, request: Request, rt: RuntimeDep
) -> Response:
    """Raise the tag's version: every entry written with the tag before it is gone."""
    home = rt.home_of(ns, None)
    if home != rt.region:
        return await rt.regions.forward(request, home, b"")
    _, version = await rt.store.bump_tag(ns, tag)
    await rt.publisher.publish(events.tag_event(ns, tag, version, origin=rt.region))
    return JsonResponse({"ns": ns, "tag": tag, "version": version}, status_code=202)


# where a namespace's data comes from: for admin keys only (a URL may name an internal
# host, or carry a credential in its query)
_PRIVATE = ("origin", "source_of_truth")


def _describe(rt: Any, ns: str, *, full: bool = True) -> dict[str, Any]:
    cfg = rt.namespace(ns).model_dump()
    if not full:
        for name in _PRIVATE:
            if cfg.get(name) is not None:
                cfg[name] = "(set: shown to admin keys)"
    return {"ns": ns, "configured": ns in rt.platform.namespaces, **cfg}


@router.get("/v1/ns")
async def list_namespaces(rt: RuntimeDep) -> JsonResponse:
    """Every configured namespace (``default`` included) with its effective settings."""
    names = sorted({"default", *rt.platform.namespaces})
    return JsonResponse({"namespaces": [_describe(rt, ns) for ns in names]})


@router.get("/v1/ns/{ns}", responses={400: _ERROR})
async def get_namespace(ns: NamespaceDep, rt: RuntimeDep, request: Request) -> JsonResponse:
    """The effective settings of one namespace (unlisted ones take ``default``); its
    origin and source-of-truth URLs are shown to admin keys only."""
    return JsonResponse(_describe(rt, ns, full=privileged(request.scope)))
