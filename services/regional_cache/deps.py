"""Dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote_to_bytes

from fastapi import Depends, Request

from libs.common.errors import InvalidKey
from libs.common.naming import check_namespace, decode_key
from services.regional_cache.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def key_from_path(request: Request) -> str:
    """The key decoded strictly from the raw path (the server's decoding is lenient)."""
    raw: bytes = request.scope.get("raw_path") or request.url.path.encode()
    parts = raw.split(b"/", 5)
    if len(parts) < 6 or not parts[5]:
        raise InvalidKey("key must not be empty")
    return decode_key(unquote_to_bytes(parts[5]))


def namespace_from_path(ns: str) -> str:
    return check_namespace(ns)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
KeyDep = Annotated[str, Depends(key_from_path)]
NamespaceDep = Annotated[str, Depends(namespace_from_path)]
