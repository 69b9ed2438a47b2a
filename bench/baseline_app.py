"""The baselines of the regional_cache benchmark: bare FastAPI endpoints over Redis (and Kafka).

``GET /k/{key}`` returns the value of the Redis key ``bench:{key}`` (404 when
absent). ``PUT /k/{key}`` (when ``BENCH_KAFKA`` names a broker) does what a
durable write needs at the least: one Redis ``SET`` and one aiokafka
``send_and_wait`` with acks=all of a small event to ``BENCH_TOPIC``. It runs
exactly like the service: uvicorn, uvloop, httptools, one worker, no access log;
so the gap between the two is what the service's own code costs per request.

Run: ``BENCH_REDIS_URL=redis://127.0.0.1:6379/0 BENCH_PORT=8200 python -m bench.baseline_app``.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import uvicorn
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, Request, Response
from redis.asyncio import Redis

KEY_PREFIX = "bench:"


def create_app(redis_url: str, kafka: str | None = None, topic: str = "bench.floor") -> FastAPI:
    redis = Redis.from_url(redis_url)
    # aiokafka makes its producer inside the running loop: in the lifespan
    producers: list[AIOKafkaProducer] = []

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if kafka:
            producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
            await producer.start()
            producers.append(producer)
        try:
            yield
        finally:
            for producer in producers:
                await producer.stop()
            await redis.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/k/{key}")
    async def get_key(key: str) -> Response:
        value = await redis.get(KEY_PREFIX + key)
        if value is None:
            return Response(status_code=404)
        return Response(value)

    @app.put("/k/{key}")
    async def put_key(key: str, request: Request) -> Response:
        if not producers:
            return Response(status_code=501)
        producer = producers[0]
        await redis.set(KEY_PREFIX + key, await request.body())
        event = {"key": key, "ts_ms": int(time.time() * 1000)}
        await producer.send_and_wait(topic, orjson.dumps(event), key=key.encode())
        return Response(status_code=200)

    return app


def main() -> None:
    app = create_app(
        os.environ["BENCH_REDIS_URL"],
        os.environ.get("BENCH_KAFKA"),
        os.environ.get("BENCH_TOPIC", "bench.floor"),
    )
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
