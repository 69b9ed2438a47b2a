"""Three regions in front of one origin: a cold-key storm costs at most one request per region."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.support.cluster import running_platform
from tests.support.origin_server import OriginServer
from tests.support.platform import eventually

CONFIG = """
[platform]
regions = ["us-east", "eu-west", "ap-south"]

[namespaces.products]
origin = "{origin}"
stale_while_revalidate = 30

[namespaces.hot]
origin = "{origin}"
xfetch_beta = 2000
"""


def test_a_storm_across_three_regions_costs_at_most_three_origin_requests(
    tmp_path: Path,
) -> None:
    origin = OriginServer().start(tmp_path / "origin")
    try:
        origin.control(latency_ms=300)
        config = CONFIG.format(origin=origin.url("/items/{key}"))
        with running_platform(tmp_path, ("us-east", "eu-west", "ap-south"), config=config) as up:
            urls = [r["url"] for r in up.cluster()["regions"].values()]

            async def storm() -> list[httpx.Response]:
                limits = httpx.Limits(max_connections=150)
                timeout = httpx.Timeout(60, pool=None)  # httpx's pool is the slow part
                async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
                    return await asyncio.gather(
                        *(client.get(f"{urls[i % 3]}/v1/ns/products/keys/cold") for i in range(300))
                    )

            replies = asyncio.run(storm())
            assert {r.status_code for r in replies} == {200}
            assert 1 <= origin.stats()["requests"]["cold"] <= 3

            # XFetch: with a large beta, hits refresh the key long before its 9+ s expiry
            origin.control(latency_ms=0, max_age=10)
            first = httpx.get(f"{urls[0]}/v1/ns/hot/keys/h").headers["etag"]
            assert first == '"1"'
            origin.control(versions={"h": 2}, max_age=60)
            eventually(
                lambda: httpx.get(f"{urls[0]}/v1/ns/hot/keys/h").headers.get("etag") == '"2"',
                timeout=10,
                what="early refresh before expiry",
            )
    finally:
        origin.stop()
