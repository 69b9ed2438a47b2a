"""Authentication and scope checks in front of every route (pure ASGI, before routing).

Which scope a request needs follows from its method and path; the namespace
is the path's ``{ns}``. ``/healthz`` and ``/readyz`` stay open, ``/metrics`` is
open to loopback clients, region-to-region routes need the internal token, and
everything else under ``/v1`` needs a key with the scope for the namespace.
"""

from __future__ import annotations

import ipaddress
import logging
from urllib.parse import unquote

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from libs.common.auth import INTERNAL_HEADER, Authenticator, presents_token

log = logging.getLogger(__name__)

INTERNAL = INTERNAL_HEADER
# where a request's standing goes (request.state): True when it may see the platform's
# internals (an admin key, the internal token, or no API keys configured at all)
PRIVILEGED = "mrcache_privileged"


def privileged(scope: Scope) -> bool:
    """Whether the request may see origins, Redis memory and other internals; a request
    that passed no AuthMiddleware (no API keys configured) may."""
    state = scope.get("state")
    return True if state is None or PRIVILEGED not in state else bool(state[PRIVILEGED])


_OPEN = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs", "/redoc"})


def required_scope(method: str, path: str) -> tuple[str, str | None]:
    """(scope, namespace) a request needs; unknown routes need admin."""
    parts = path.split("/")
    if path == "/v1/info":
        return "any", None  # every valid key may discover the regions
    if path == "/v1/ns":
        return "admin", None
    if len(parts) >= 4 and parts[1] == "v1" and parts[2] == "ns":
        ns = unquote(parts[3])
        rest = parts[4:]
        if not rest:
            return "read", ns
        if rest[0] == "keys" or rest[0].startswith("keys:"):
            if method in ("PUT", "DELETE"):
                return "write", ns
            return "read", ns
        if rest[-1] == "invalidate":
            return "invalidate", ns
    return "admin", None


class AuthMiddleware:
    def __init__(
        self, app: ASGIApp, *, authenticator: Authenticator, internal_token: str | None
    ) -> None:
        self.app = app
        self.auth = authenticator
        self.internal_token = internal_token.encode() if internal_token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        denial = self._check(scope, path, headers)
        if denial is None:
            await self.app(scope, receive, send)
            return
        status, code, message = denial
        body = orjson.dumps({"error": {"code": code, "message": message}})
        extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _check(
        self,
        scope: Scope,
        path: str,
        headers: dict[str, str],
    ) -> tuple[int, str, str] | None:
        if path in _OPEN:
            return None
        if path.startswith("/internal/"):
            return (
                None
                if self._internal(headers)
                else (401, "unauthorized", "region-to-region routes need the internal token")
            )
        if path == "/metrics" and _loopback(scope):
            return None
        identity = self.auth.identify(headers.get("authorization"))
        scope.setdefault("state", {})[PRIVILEGED] = self._internal(headers) or (
            identity is not None and "admin" in identity.scopes
        )
        if identity is None:
            return 401, "unauthorized", "a valid API key is required (Authorization: Bearer)"
        needed, ns = (
            ("admin", None) if path == "/metrics" else required_scope(scope["method"], path)
        )
        if not identity.allows(needed, ns):
            target = f"namespace {ns!r}" if ns else "this route"
            return 403, "forbidden", f"key {identity.name!r} lacks the {needed} scope for {target}"
        return None

    def _internal(self, headers: dict[str, str]) -> bool:
        return presents_token(headers.get(INTERNAL), self.internal_token)


def _loopback(scope: Scope) -> bool:
    client = scope.get("client")
    if not client:
        return False
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False
