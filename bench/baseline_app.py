"""The baseline of the regional_cache benchmark: a bare FastAPI endpoint doing one Redis GET.

``GET /k/{key}`` returns the value of the Redis key ``bench:{key}`` (404 when
absent). It runs exactly like the service: uvicorn, uvloop, httptools, one
worker, no access log; so the gap between the two is what the service's own
code costs per request.

Run: ``BENCH_REDIS_URL=redis://127.0.0.1:6379/0 BENCH_PORT=8200 python -m bench.baseline_app``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, Response
from redis.asyncio import Redis

KEY_PREFIX = "bench:"


def create_app(redis_url: str) -> FastAPI:
    redis = Redis.from_url(redis_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await redis.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/k/{key}")
    async def get_key(key: str) -> Response:
        value = await redis.get(KEY_PREFIX + key)
        if value is None:
            return Response(status_code=404)
        return Response(value)

    return app


def main() -> None:
    app = create_app(os.environ["BENCH_REDIS_URL"])
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(os.environ["BENCH_PORT"]),
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
