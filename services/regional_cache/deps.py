"""Dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote_to_bytes

from fastapi import Depends, Path, Request
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.types import Scope

from libs.common.errors import InvalidKey
from libs.common.naming import NAMESPACE_RE, check_namespace, check_tag, decode_key
from services.regional_cache.runtime import Runtime


class _AnyPathConvertor(PathConvertor):
    """Like ``path`` but also across newlines, so a key with ``%0A`` reaches validation
    (and gets 400 ``invalid_key``) instead of falling through to a 404."""

    regex = "(?s:.*)"


register_url_convertor("anypath", _AnyPathConvertor())
# the key segment of every route that names a key
KEY_PARAM = "{key:anypath}"


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def raw_key(scope: Scope) -> str:
    """The key decoded strictly from the raw path (the server's decoding is lenient)."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    # the key is everything after as many slashes as the route has before "{key"
    template: str = scope["route"].path
    depth = template[: template.index("{key")].count("/")
    parts = raw.split(b"/", depth)
    if len(parts) <= depth or not parts[depth]:
        raise InvalidKey("key must not be empty")
    return decode_key(unquote_to_bytes(parts[depth]))


# dependencies are async: FastAPI runs a plain ``def`` dependency in a worker thread


async def key_from_path(
    request: Request,
    key: Annotated[str, Path(description="1..512 bytes of UTF-8, URL-encoded")],
) -> str:
    """The strictly decoded key. ``key`` is declared so the OpenAPI schema names the
    path parameter; its value is the server's lenient decoding and is not used."""
    return raw_key(request.scope)


async def namespace_from_path(
    ns: Annotated[str, Path(json_schema_extra={"pattern": f"^{NAMESPACE_RE.pattern}$"})],
) -> str:
    # the pattern documents the rule; validation stays ours so the error is invalid_namespace
    return check_namespace(ns)


async def tag_from_path(tag: str) -> str:
    return check_tag(tag)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
TagDep = Annotated[str, Depends(tag_from_path)]
KeyDep = Annotated[str, Depends(key_from_path)]
NamespaceDep = Annotated[str, Depends(namespace_from_path)]
