"""Size limits of the JSON bodies, enforced while a body is read.

FastAPI reads a JSON body whole before any validation sees it: a 200 MB batchGet
took a process from 98 MB to 704 MB. This pure ASGI middleware answers a declared
``Content-Length`` past the route's limit with the JSON 413 of api.md at once, and
stops a body sent without one (chunked) as soon as the limit is crossed. Starlette's
own body limit answers in plain text, which api.md does not allow. A key's value
(PUT) is limited by its route, which streams it (``max_value_bytes``).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common.errors import ValueTooLarge
from libs.common.naming import JSON_BYTES_PER_KEY, MAX_BATCH_KEYS, MAX_WARM_KEYS
from libs.common.responses import JsonResponse
from services.regional_cache.probe import MAX_PROBE_KEYS
from services.regional_cache.pusher import MAX_PUSH_REQUEST_BYTES

# (path test, bytes allowed) of the routes with a body other than a key's value
_LIMITS: tuple[tuple[Callable[[str], bool], int], ...] = (
    (lambda p: p.endswith("/keys:batchGet"), MAX_BATCH_KEYS * JSON_BYTES_PER_KEY),
    (lambda p: p == "/internal/v1/probe", MAX_PROBE_KEYS * JSON_BYTES_PER_KEY),
    (lambda p: p == "/internal/v1/warm", MAX_WARM_KEYS * JSON_BYTES_PER_KEY),
    (lambda p: p == "/internal/v1/events", MAX_PUSH_REQUEST_BYTES),
)


def body_limit(path: str) -> int | None:
    for matches, limit in _LIMITS:
        if matches(path):
            return limit
    return None


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = body_limit(scope["path"]) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > limit):
                error = ValueTooLarge(f"the body exceeds {limit} bytes")
                await JsonResponse(error.body(), status_code=error.http_status)(
                    scope, receive, send
                )
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # an HTTPException passes FastAPI's body parsing as it is; the
                    # handlers render it as the JSON 413
                    raise HTTPException(413, f"the body exceeds {limit} bytes")
            return message

        await self.app(scope, limited, send)
