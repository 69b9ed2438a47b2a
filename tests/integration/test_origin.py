"""OriginClient against a real origin process (tests/support/origin_server.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libs.common.breaker import BreakerSettings
from libs.common.errors import OriginUnavailable
from libs.common.metrics import Metrics
from libs.common.origin import OriginClient, OriginResult, check_template, origin_of
from tests.support.origin_server import OriginServer
from tests.support.platform import eventually_async

NS = "products"


@pytest.fixture(scope="module")
def origin_server(workdir: Path) -> Iterator[OriginServer]:
    server = OriginServer().start(workdir)
    yield server
    server.stop()


@pytest.fixture
def origin(origin_server: OriginServer) -> Iterator[OriginServer]:
    """The module's origin, with counts and settings cleared before and after each test."""
    origin_server.reset()
    yield origin_server
    origin_server.reset()


def outcomes(metrics: Metrics, ns: str = NS) -> dict[str, float]:
    values = {}
    for outcome in ("found", "absent", "error", "timeout", "rejected"):
        value = metrics.registry.get_sample_value(
            "mrcache_origin_requests_total", {"ns": ns, "outcome": outcome}
        )
        if value:
            values[outcome] = value
    return values


def client(metrics: Metrics, *, timeout: float = 1.0, **kwargs: Any) -> OriginClient:
    return OriginClient(metrics, timeout=timeout, backoff=kwargs.pop("backoff", 0.01), **kwargs)


async def test_found_with_version_max_age_and_content_type(origin: OriginServer) -> None:
    origin.control(versions={"k1": 42}, max_age=30)
    metrics = Metrics()
    async with client(metrics) as origins:
        result = await origins.fetch(NS, origin.url(), "k1")
    assert result == OriginResult(
        found=True,
        value=b"value-of-k1-v42",
        content_type="text/plain",
        version=42,
        max_age=30.0,
    )
    assert outcomes(metrics) == {"found": 1}


async def test_key_is_url_quoted(origin: OriginServer) -> None:
    metrics = Metrics()
    key = "a/b c?d=ü"
    async with client(metrics) as origins:
        result = await origins.fetch(NS, origin.url(), key)
    assert result.value == f"value-of-{key}-v1".encode()
    assert origin.stats()["requests"] == {key: 1}


@pytest.mark.parametrize("key", ["..", ".", "...", "./x"])
async def test_dot_segments_stay_inside_the_template(origin: OriginServer, key: str) -> None:
    """A key of ``..`` made the origin request ``/`` and ``.`` ``/items``: dot segments
    resolved by the HTTP client escaped the template."""
    async with client(Metrics()) as origins:
        result = await origins.fetch(NS, origin.url(), key)
    assert result.value == f"value-of-{key}-v1".encode()
    assert origin.stats()["requests"] == {key: 1}


async def test_no_version_no_cache_control(origin: OriginServer) -> None:
    origin.control(no_version=True)
    async with client(Metrics()) as origins:
        result = await origins.fetch(NS, origin.url(), "k")
    assert result.found
    assert result.version is None
    assert result.max_age is None


async def test_x_version_s_maxage_and_no_store(origin: OriginServer) -> None:
    origin.control(
        no_version=True,
        headers={"X-Version": "7", "Cache-Control": "public, max-age=10, s-maxage=60"},
        content_type="application/json",
    )
    async with client(Metrics()) as origins:
        result = await origins.fetch(NS, origin.url(), "k")
        assert (result.version, result.max_age, result.content_type) == (
            7,
            60.0,
            "application/json",
        )
        origin.control(headers={"ETag": 'W/"9"', "Cache-Control": "no-store"})
        result = await origins.fetch(NS, origin.url(), "k")
        assert (result.version, result.max_age) == (9, 0.0)
        origin.control(headers={"ETag": '"abc"', "Cache-Control": "max-age=0"})
        result = await origins.fetch(NS, origin.url(), "k")
        assert (result.version, result.max_age) == (None, 0.0)
        origin.control(headers={"ETag": f'"{2**53}"'})
        result = await origins.fetch(NS, origin.url(), "k")
        assert result.version is None


async def test_absent(origin: OriginServer) -> None:
    origin.control(absent=["gone"])
    metrics = Metrics()
    async with client(metrics) as origins:
        result = await origins.fetch(NS, origin.url(), "gone")
    assert result == OriginResult(found=False)
    assert outcomes(metrics) == {"absent": 1}


async def test_500_fails_without_retry(origin: OriginServer) -> None:
    origin.control(fail="500")
    metrics = Metrics()
    async with client(metrics, retries=2) as origins:
        with pytest.raises(OriginUnavailable, match="HTTP 500"):
            await origins.fetch(NS, origin.url(), "k")
    assert origin.stats()["total"] == 1
    assert outcomes(metrics) == {"error": 1}


async def test_503_is_retried_then_fails(origin: OriginServer) -> None:
    origin.control(fail="503")
    metrics = Metrics()
    async with client(metrics, retries=2) as origins:
        with pytest.raises(OriginUnavailable, match="after 3 attempts: HTTP 503"):
            await origins.fetch(NS, origin.url(), "k")
    assert origin.stats()["total"] == 3
    assert outcomes(metrics) == {"error": 3}


async def test_503_then_healthy_succeeds_on_retry(origin: OriginServer) -> None:
    origin.control(fail="503", fail_next=2)
    metrics = Metrics()
    async with client(metrics, retries=2) as origins:
        result = await origins.fetch(NS, origin.url(), "k")
    assert result.found
    assert origin.stats()["total"] == 3
    assert outcomes(metrics) == {"error": 2, "found": 1}


async def test_reset_connection_is_retried(origin: OriginServer) -> None:
    origin.control(fail="reset")
    metrics = Metrics()
    async with client(metrics, retries=1) as origins:
        with pytest.raises(OriginUnavailable, match="connection failed"):
            await origins.fetch(NS, origin.url(), "k")
    assert origin.stats()["total"] == 2
    assert outcomes(metrics) == {"error": 2}


async def test_timeout_honours_the_client_timeout(origin: OriginServer) -> None:
    origin.control(fail="timeout")
    metrics = Metrics()
    async with client(metrics, timeout=0.3, retries=1) as origins:
        started = time.monotonic()
        with pytest.raises(OriginUnavailable, match="timed out"):
            await origins.fetch(NS, origin.url(), "k")
        elapsed = time.monotonic() - started
    assert 0.6 <= elapsed < 1.5, elapsed
    assert outcomes(metrics) == {"timeout": 2}


async def test_connection_refused(origin: OriginServer) -> None:
    from libs.common.processes import free_port

    metrics = Metrics()
    async with client(metrics, retries=1) as origins:
        with pytest.raises(OriginUnavailable, match="connection failed"):
            await origins.fetch(NS, f"http://127.0.0.1:{free_port()}/{{key}}", "k")
    assert outcomes(metrics) == {"error": 2}


async def test_invalid_template_is_an_origin_failure() -> None:
    metrics = Metrics()
    async with client(metrics) as origins:
        with pytest.raises(OriginUnavailable, match="not a valid URL"):
            await origins.fetch(NS, "http://host:99999/{key}", "k")
        with pytest.raises(OriginUnavailable, match="not a valid URL"):
            await origins.fetch(NS, "http://[::1/{key}", "k")
    assert outcomes(metrics) == {"error": 2}


async def test_oversized_body(origin: OriginServer) -> None:
    origin.control(sizes={"big": 64 * 1024, "fits": 1024})
    metrics = Metrics()
    async with client(metrics, max_value_bytes=1024) as origins:
        with pytest.raises(OriginUnavailable, match="byte limit"):
            await origins.fetch(NS, origin.url(), "big")
        fits = await origins.fetch(NS, origin.url(), "fits")
    assert len(fits.value) == 1024
    assert origin.stats()["requests"] == {"big": 1, "fits": 1}
    assert outcomes(metrics) == {"error": 1, "found": 1}


@pytest.mark.parametrize("status", [302, 403, 429, 501])
async def test_other_status_is_a_failure_without_retry(origin: OriginServer, status: int) -> None:
    origin.control(statuses={"k": status})
    metrics = Metrics()
    async with client(metrics, retries=2) as origins:
        with pytest.raises(OriginUnavailable, match=f"HTTP {status}"):
            await origins.fetch(NS, origin.url(), "k")
    assert origin.stats()["total"] == 1
    assert outcomes(metrics) == {"error": 1}


async def test_unusable_answers_do_not_open_the_breaker(origin: OriginServer) -> None:
    """A 403 says the origin is up but refuses this key: other keys keep flowing."""
    origin.control(statuses={"k": 403})
    breaker = BreakerSettings(min_requests=2)
    async with client(Metrics(), breaker=breaker) as origins:
        for _ in range(4):
            with pytest.raises(OriginUnavailable, match="HTTP 403"):
                await origins.fetch(NS, origin.url(), "k")
        assert origins.breaker(origin.url()).state == "closed"
        assert (await origins.fetch(NS, origin.url(), "other")).found


async def test_breaker_opens_fails_fast_and_recovers(origin: OriginServer) -> None:
    origin.control(fail="500")
    metrics = Metrics()
    breaker = BreakerSettings(window=10, min_requests=4, failure_rate=0.5, open_seconds=0.5)
    async with client(metrics, retries=0, breaker=breaker) as origins:
        for _ in range(4):
            with pytest.raises(OriginUnavailable, match="HTTP 500"):
                await origins.fetch(NS, origin.url(), "k")
        assert origins.breaker(origin.url()).state == "open"

        # open: fail fast, the origin is not asked
        started = time.monotonic()
        with pytest.raises(OriginUnavailable, match="circuit breaker is open"):
            await origins.fetch(NS, origin.url(), "k")
        assert time.monotonic() - started < 0.5
        assert origin.stats()["total"] == 4
        assert outcomes(metrics) == {"error": 4, "rejected": 1}

        # half-open while the origin still fails: the probe fails, it opens again
        await asyncio.sleep(0.55)
        with pytest.raises(OriginUnavailable, match="HTTP 500"):
            await origins.fetch(NS, origin.url(), "k")
        assert origins.breaker(origin.url()).state == "open"
        assert origin.stats()["total"] == 5

        # half-open with a healthy origin: the probe succeeds and closes it
        origin.control(fail=None)
        await asyncio.sleep(0.55)
        result = await origins.fetch(NS, origin.url(), "k")
        assert result.found
        assert origins.breaker(origin.url()).state == "closed"
        results = await asyncio.gather(*(origins.fetch(NS, origin.url(), "k") for _ in range(5)))
        assert all(r.found for r in results)

    labels = {"origin": origin_of(origin.url())}
    assert metrics.registry.get_sample_value("mrcache_origin_breaker_state", labels) == 0
    assert (
        metrics.registry.get_sample_value(
            "mrcache_origin_breaker_transitions_total", {**labels, "to": "open"}
        )
        == 2
    )


async def test_breaker_stops_retries(origin: OriginServer) -> None:
    origin.control(fail="503")
    metrics = Metrics()
    breaker = BreakerSettings(min_requests=2, open_seconds=30)
    async with client(metrics, retries=5, breaker=breaker) as origins:
        with pytest.raises(OriginUnavailable, match="circuit breaker is now open"):
            await origins.fetch(NS, origin.url(), "k")
    assert origin.stats()["total"] == 2
    assert outcomes(metrics) == {"error": 2, "rejected": 1}


async def test_concurrency_bound(origin: OriginServer) -> None:
    origin.control(latency_ms=200)
    metrics = Metrics()
    async with client(metrics, max_concurrency=2, timeout=2.0) as origins:
        started = time.monotonic()
        results = await asyncio.gather(
            *(origins.fetch(NS, origin.url(), f"k{i}") for i in range(6))
        )
        elapsed = time.monotonic() - started
    assert all(r.found for r in results)
    assert elapsed >= 3 * 0.2, elapsed
    stats = origin.stats()
    assert stats["total"] == 6
    assert stats["max_inflight"] == 2


async def test_no_slot_within_timeout_is_rejected(origin: OriginServer) -> None:
    """The slot wait and the request each get ``timeout``; a slot not free in time is a reject."""
    origin.control(latency_ms=400)
    metrics = Metrics()
    async with client(metrics, max_concurrency=1, timeout=0.6, retries=0) as origins:
        first = asyncio.ensure_future(origins.fetch(NS, origin.url(), "a"))
        await asyncio.sleep(0.05)
        # waits ~0.35 s for the slot, then has a full 0.6 s for its 0.4 s request
        second = asyncio.ensure_future(origins.fetch(NS, origin.url(), "b"))
        # would wait ~0.75 s for the slot: rejected after 0.6 s
        third = asyncio.ensure_future(origins.fetch(NS, origin.url(), "c"))
        done = await asyncio.gather(first, second, third, return_exceptions=True)
        assert origins.breaker(origin.url()).state == "closed"
    assert isinstance(done[0], OriginResult)
    assert isinstance(done[1], OriginResult)
    assert isinstance(done[2], OriginUnavailable)
    assert "no slot" in str(done[2])
    assert outcomes(metrics) == {"found": 2, "rejected": 1}
    assert origin.stats()["requests"] == {"a": 1, "b": 1}


async def test_cancelled_probe_gives_its_slot_back(origin: OriginServer) -> None:
    origin.control(fail="500")
    breaker = BreakerSettings(min_requests=1, open_seconds=0.2)
    async with client(Metrics(), retries=0, breaker=breaker) as origins:
        with pytest.raises(OriginUnavailable):
            await origins.fetch(NS, origin.url(), "k")
        origin.control(fail="timeout")
        await asyncio.sleep(0.25)
        probe = asyncio.ensure_future(origins.fetch(NS, origin.url(), "k"))

        async def probing() -> bool:
            stats = await asyncio.to_thread(origin.stats)
            return bool(stats["inflight"] == 1)

        await eventually_async(probing, timeout=5.0, what="the probe reaching the origin")
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        origin.control(fail=None)
        assert (await origins.fetch(NS, origin.url(), "k")).found
        assert origins.breaker(origin.url()).state == "closed"


@pytest.mark.parametrize(
    "template",
    [
        "http://127.0.0.1:9000/products",
        "ftp://host/{key}",
        "http://{key}.example.com/",
        "/relative/{key}",
        "http://user:pw@host/{key}",
        "http://host:99999/{key}",
    ],
)
def test_check_template_rejects(template: str) -> None:
    with pytest.raises(ValueError, match="origin"):
        check_template(template)


def test_check_template_accepts() -> None:
    for template in ("http://127.0.0.1:9000/products/{key}", "https://api.example/v1?id={key}"):
        assert check_template(template) == template
    assert origin_of("https://api.example/v1?id={key}") == "https://api.example:443"
