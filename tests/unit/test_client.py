"""The client SDK: its sans-IO logic, and both clients over ``httpx.MockTransport``.

``FakePlatform`` answers like three regions would (home regions, forwarding,
``min_version``, per-region copies that can lag behind the home), and can make
a region refuse connections or answer an error.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote

import httpx
import pytest

from libs.client import AsyncMrcacheClient, ClientOptions, MrcacheClient, errors, wire
from libs.client.homes import Homes
from libs.client.operations import Flow, Operations, Outcome
from libs.client.routing import Backoff, Router
from libs.client.versions import VersionMemory, Written
from libs.common.config import NamespaceConfig
from libs.common.homes import home_region
from tests.support.clock import FakeClock

T = TypeVar("T")

URLS = {"eu": "http://eu.test", "us": "http://us.test", "ap": "http://ap.test"}
HOMES = {"default": "us", "euro": "eu", "hashed": "hash"}


@dataclass
class Held:
    value: bytes
    version: int
    content_type: str = "application/octet-stream"
    deleted: bool = False


@dataclass
class FakePlatform:
    """Three regions in one handler; ``copies`` are what each region holds (may lag)."""

    homes: dict[str, str] = field(default_factory=lambda: dict(HOMES))
    truth: dict[tuple[str, str], Held] = field(default_factory=dict)
    copies: dict[str, dict[tuple[str, str], Held]] = field(
        default_factory=lambda: {r: {} for r in URLS}
    )
    down: set[str] = field(default_factory=set)
    slow: set[str] = field(default_factory=set)  # these time out after the request was sent
    answers: dict[str, tuple[int, str]] = field(default_factory=dict)  # region -> forced error
    forbidden_config: set[str] = field(default_factory=set)
    delays: dict[str, float] = field(default_factory=dict)
    seen: list[tuple[str, str, str, dict[str, str]]] = field(default_factory=list)
    headers_seen: list[httpx.Headers] = field(default_factory=list)
    clock: int = 1_000

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def region_of(self, request: httpx.Request) -> str:
        return request.url.host.split(".")[0]

    def home_of(self, ns: str, key: str | None) -> str:
        cfg = NamespaceConfig(home_region=self.homes.get(ns, "us"))
        return home_region(cfg, list(URLS), ns, key)

    def requests(self, method: str) -> list[str]:
        """The regions asked for key or namespace requests with ``method``, in order."""
        return [
            region
            for region, m, path, _ in self.seen
            if m == method and path.startswith("/v1/ns/") and "->" not in region
        ]

    def config_reads(self) -> list[str]:
        return [region for region, _, path, _ in self.seen if path.count("/") == 3]

    def probes(self) -> int:
        return sum(1 for _, _, path, _ in self.seen if path == "/healthz")

    def handle(self, request: httpx.Request) -> httpx.Response:
        region = self.region_of(request)
        path = request.url.raw_path.decode().split("?")[0]
        self.seen.append((region, request.method, path, dict(request.url.params)))
        self.headers_seen.append(request.headers)
        if region in self.delays:
            time.sleep(self.delays[region])
        if region in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if region in self.slow:
            raise httpx.ReadTimeout("timed out", request=request)
        if region in self.answers:
            status, code = self.answers[region]
            return _error(status, code, "forced")
        if path == "/healthz":
            return httpx.Response(200, json={"status": "ok"})
        if path == "/v1/info":
            return httpx.Response(200, json={"region": region, "regions": URLS, "version": "0.1.0"})
        parts = [unquote(p) for p in path.split("/")]
        ns = parts[3]
        if len(parts) == 4:
            if ns in self.forbidden_config:
                return _error(403, "forbidden", "no read scope")
            home = self.homes.get(ns, "us")
            return httpx.Response(
                200,
                json={"ns": ns, "home_region": home, "configured": True, "default_ttl": 60.0},
            )
        if parts[4] == "keys:batchGet":
            keys = json.loads(request.content)["keys"]
            return httpx.Response(
                200, json={"items": [self._batch_item(region, ns, k) for k in keys]}
            )
        key = parts[5] if parts[4] == "keys" else None
        if request.method == "GET" and key is not None:
            return self._get(region, ns, key, int(request.url.params.get("min_version", "0")))
        home = self.home_of(ns, key)
        forwarded = {}
        if home != region:
            if home in self.down:
                return _error(503, "home_unavailable", f"home region {home} is unreachable")
            self.seen.append((f"{region}->{home}", request.method, path, {}))
            forwarded = {"X-Cache-Forwarded": region}
        if parts[4] == "invalidate":
            return httpx.Response(202, json={"ns": ns, "generation": 7}, headers=forwarded)
        if parts[4] == "tags":
            return httpx.Response(
                202, json={"ns": ns, "tag": parts[5], "version": 9}, headers=forwarded
            )
        assert key is not None
        if request.headers.get("if-none-match") == "*" and (ns, key) in self.truth:
            return _error(412, "precondition_failed", "exists", current_version=self.clock)
        self.clock += 1
        if request.method == "DELETE":
            self.truth[(ns, key)] = Held(b"", self.clock, deleted=True)
            return httpx.Response(204, headers={"ETag": f'"{self.clock}"', **forwarded})
        held = Held(request.content, self.clock, request.headers.get("content-type", "x/y"))
        self.truth[(ns, key)] = held
        self.copies[home][(ns, key)] = held
        body = {
            "ns": ns,
            "key": key,
            "version": self.clock,
            "home_region": home,
            "ttl": 60.0,
            "expires_at": 2e9,
        }
        return httpx.Response(200, json=body, headers={"ETag": f'"{self.clock}"', **forwarded})

    def _get(self, region: str, ns: str, key: str, floor: int) -> httpx.Response:
        held = self.copies[region].get((ns, key))
        if held is None or held.version < floor:
            held = self.truth.get((ns, key))  # a fill from the home region
            if held is not None:
                self.copies[region][(ns, key)] = held
        if held is None or held.deleted:
            return _error(404, "not_found", "key not found")
        headers = {
            "ETag": f'"{held.version}"',
            "Content-Type": held.content_type,
            "X-Cache": "HIT",
            "X-Cache-Region": region,
            "Age": "3",
        }
        return httpx.Response(200, content=held.value, headers=headers)

    def _batch_item(self, region: str, ns: str, key: str) -> dict[str, Any]:
        held = self.copies[region].get((ns, key)) or self.truth.get((ns, key))
        if held is None or held.deleted:
            return {"key": key, "found": False}
        return {
            "key": key,
            "found": True,
            "version": held.version,
            "content_type": held.content_type,
            "value_b64": base64.b64encode(held.value).decode(),
        }


def _error(status: int, code: str, message: str, **details: Any) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message, **details}})


# --------------------------------------------------------------------------- sans-IO


def drive(flow: Flow[T], platform: FakePlatform, elapsed: Callable[[str], float]) -> T:
    """Run a flow against the fake platform without a client (``elapsed`` per region)."""
    try:
        attempt = next(flow)
        while True:
            try:
                outcome = Outcome(platform.handle(attempt.request), None, elapsed(attempt.region))
            except httpx.TransportError as exc:
                outcome = Outcome(None, exc, elapsed(attempt.region))
            attempt = flow.send(outcome)
    except StopIteration as done:
        result: T = done.value
        return result


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(initial=0.25, cap=30.0, jitter=0.5)
    assert [backoff.delay(n, 0.0) for n in (1, 2, 3, 4)] == [0.25, 0.5, 1.0, 2.0]
    assert backoff.delay(2, 0.999) == pytest.approx(0.5 * 1.4995)
    assert backoff.delay(20, 0.0) == 30.0
    assert backoff.delay(10_000, 0.9) == 30.0


def test_router_prefers_the_lowest_latency_then_configured_order() -> None:
    router = Router(URLS, ClientOptions(latency_smoothing=0.5), clock=FakeClock())
    assert router.order() == ["eu", "us", "ap"]  # nothing measured: configured order
    router.succeeded("eu", 0.010)
    assert router.order() == ["us", "ap", "eu"]  # unmeasured first: real reads measure them
    router.succeeded("us", 0.002)
    router.succeeded("ap", 0.010)
    assert router.order() == ["us", "eu", "ap"]  # equal latencies: configured order
    router.succeeded("us", 0.040)  # EWMA: 0.002 + 0.5 * (0.040 - 0.002) = 0.021
    assert router.status()[1].latency == pytest.approx(0.021)
    assert router.order() == ["eu", "ap", "us"]


def test_router_backs_off_a_failed_region_and_heals_on_success() -> None:
    clock = FakeClock()
    options = ClientOptions(backoff_initial=1.0, backoff_max=4.0, backoff_jitter=0.0)
    router = Router(URLS, options, clock=clock)
    router.failed("eu", "ConnectError")
    assert router.order() == ["us", "ap"]
    assert not router.available("eu")
    router.failed("eu", "again")  # concurrent failures of one outage count once
    assert router.status()[0].failures == 1
    clock.advance(1.0)
    assert router.order() == ["eu", "us", "ap"]  # backoff expired: tried again in its place
    router.failed("eu", "still down")
    assert router.retry_in("eu") == 2.0
    clock.advance(2.0)
    router.failed("eu", "still down")
    clock.advance(4.0)
    router.failed("eu", "still down")
    assert router.retry_in("eu") == 4.0  # capped
    status = router.status()[0]
    assert (status.healthy, status.failures, status.last_error) == (False, 4, "still down")
    router.succeeded("eu", None)
    assert router.available("eu") and router.status()[0].healthy


def test_version_memory_is_a_bounded_lru_keeping_the_newest() -> None:
    memory = VersionMemory(capacity=2)
    memory.remember("ns", "a", 5)
    memory.remember("ns", "a", 3)  # an older write finishing late
    assert memory.floor("ns", "a") == Written(5)
    memory.remember("ns", "b", 1)
    memory.floor("ns", "a")  # a is now the most recent
    memory.remember("ns", "c", 1)
    assert memory.floor("ns", "b") is None and len(memory) == 2
    memory.remember("ns", "a", 9, deleted=True)
    held = memory.floor("ns", "a")
    assert held is not None and held.deleted and held.satisfied_by(None)
    assert not Written(5).satisfied_by(None)


def test_hash_homes_are_the_servers_and_fixed_homes_win() -> None:
    clock = FakeClock()
    homes = Homes(list(URLS), ttl=10.0, clock=clock)
    hashed = homes.store("hashed", "hash")
    cfg = NamespaceConfig(home_region="hash")
    for i in range(50):
        assert homes.home(hashed, "hashed", f"k{i}") == home_region(
            cfg, list(URLS), "hashed", f"k{i}"
        )
    assert {homes.home(hashed, "hashed", f"k{i}") for i in range(50)} == set(URLS)
    assert homes.home(hashed, "hashed", None) == home_region(cfg, list(URLS), "hashed", None)
    fixed = homes.store("euro", "eu")
    assert homes.home(fixed, "euro", "anything") == "eu"
    assert homes.home(homes.store("secret", None), "secret", "k") is None
    assert homes.lookup("euro") is not None
    clock.advance(10.0)
    assert homes.lookup("euro") is None  # read again after the TTL


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "invalid_key", errors.InvalidInput),
        (422, "invalid_ttl", errors.InvalidInput),
        (401, "unauthorized", errors.Unauthorized),
        (403, "forbidden", errors.Forbidden),
        (409, "stale_version", errors.StaleVersion),
        (412, "precondition_failed", errors.PreconditionFailed),
        (413, "value_too_large", errors.ValueTooLarge),
        (502, "origin_unavailable", errors.OriginUnavailable),
        (503, "home_unavailable", errors.HomeUnavailable),
        (500, "internal_error", errors.ApiError),
        (418, None, errors.ApiError),
    ],
)
def test_error_answers_map_to_sdk_errors(
    status: int, code: str | None, expected: type[errors.MrcacheClientError]
) -> None:
    body = {"error": {"code": code, "message": "why", "current_version": 41}} if code else None
    response = httpx.Response(status, json=body) if body else httpx.Response(status, text="teapot")
    error = wire.error_from(response)
    assert type(error) is expected
    assert error.status == status
    assert error.code == (code or f"http_{status}")
    if isinstance(error, errors.StaleVersion | errors.PreconditionFailed):
        assert error.current_version == 41


def test_which_answers_are_failover_reasons() -> None:
    request = httpx.Request("GET", "http://eu.test/")
    assert wire.failure(None, httpx.ConnectError("refused", request=request))
    assert wire.failure(None, httpx.ReadTimeout("slow", request=request))
    assert wire.failure(httpx.Response(503, json={"error": {"code": "store_unavailable"}}), None)
    assert wire.failure(httpx.Response(502, text="<html>bad gateway</html>"), None)
    assert wire.failure(httpx.Response(504), None)
    for status in (200, 400, 401, 403, 404, 409, 412, 413, 422, 500):
        assert wire.failure(httpx.Response(status), None) is None
    # the origin is the same for every region: failing over would not help
    assert (
        wire.failure(httpx.Response(502, json={"error": {"code": "origin_unavailable"}}), None)
        is None
    )


def test_put_requests_carry_every_option_and_escape_keys() -> None:
    options = wire.PutOptions(
        ttl=30,
        tags=("a", "b"),
        version=17,
        if_match=16,
        if_none_match=True,
        content_type="text/plain",
    )
    request = options.spec("ns", "a/b c?%", b"v").request("http://eu.test", {}, httpx.Timeout(1.0))
    assert request.url.raw_path == b"/v1/ns/ns/keys/a%2Fb%20c%3F%25?ttl=30.0&tags=a%2Cb&version=17"
    assert request.headers["if-match"] == '"16"'
    assert request.headers["if-none-match"] == "*"
    assert request.headers["content-type"] == "text/plain"
    assert request.extensions["timeout"]["read"] == 1.0
    with pytest.raises(TypeError):
        wire.PutOptions(tags="sale").spec("ns", "k", b"")


def test_etag_versions() -> None:
    assert wire.etag_version('"42"') == 42
    assert wire.etag_version('W/"42"') == 42
    assert wire.etag_version(None) is None
    assert wire.etag_version('"abc"') is None


def test_a_region_in_backoff_is_tried_again_once_it_expires() -> None:
    clock = FakeClock()
    platform = FakePlatform()
    ops = Operations(URLS, options=ClientOptions(backoff_jitter=0.0), clock=clock)
    platform.truth[("default", "k")] = Held(b"v", 1)
    platform.down.add("eu")
    assert drive(ops.get("default", "k"), platform, lambda _: 0.001) is not None
    assert platform.requests("GET") == ["eu", "us"]  # failed over at once
    drive(ops.get("default", "k"), platform, lambda _: 0.001)
    assert platform.requests("GET")[2:] == ["ap"]  # eu is backing off: not asked (ap unmeasured)
    platform.down.clear()
    clock.advance(0.25)
    item = drive(ops.get("default", "k"), platform, lambda _: 0.001)
    assert item is not None and item.region == "eu"  # expired: tried again in its place
    assert ops.status()[0].healthy


def test_every_region_down_raises_no_region_available() -> None:
    platform = FakePlatform(down=set(URLS))
    ops = Operations(URLS, clock=FakeClock())
    with pytest.raises(errors.NoRegionAvailable) as caught:
        drive(ops.get("default", "k"), platform, lambda _: 0.001)
    assert set(caught.value.failures) == set(URLS)
    count = len(platform.seen)
    with pytest.raises(errors.NoRegionAvailable, match="backing off"):
        drive(ops.get("default", "k"), platform, lambda _: 0.001)
    assert len(platform.seen) == count  # all backing off: no request at all


# --------------------------------------------------------------------- the clients


class Client:
    """Either client behind one awaitable surface, so each test runs against both."""

    ASYNC_METHODS = frozenset(
        {"get", "put", "delete", "batch_get", "invalidate_namespace", "invalidate_tag"}
        | {"namespace", "info", "start", "stop", "close", "probe"}
    )

    def __init__(self, inner: AsyncMrcacheClient | MrcacheClient) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if isinstance(self.inner, AsyncMrcacheClient) or name not in self.ASYNC_METHODS:
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            return attr(*args, **kwargs)

        return call


Factory = Callable[..., Awaitable[Client]]


@pytest.fixture(params=["async", "sync"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    """Build the client under test (async or sync) on a fake platform; closes it after."""
    made: list[Client] = []

    async def factory(
        platform: FakePlatform, *, discover: str | None = None, nearest_eu: bool = True, **kw: Any
    ) -> Client:
        transport = platform.transport()
        if request.param == "async":
            inner: AsyncMrcacheClient | MrcacheClient = (
                await AsyncMrcacheClient.discover(discover, transport=transport, **kw)
                if discover
                else AsyncMrcacheClient(URLS, transport=transport, **kw)
            )
        else:
            inner = (
                MrcacheClient.discover(discover, transport=transport, **kw)
                if discover
                else MrcacheClient(URLS, transport=transport, **kw)
            )
        made.append(Client(inner))
        if nearest_eu:
            # measured once: eu answers fastest, so the tests know the nearest region
            platform.delays.update({"us": 0.03, "ap": 0.03})
            await made[-1].probe()
            platform.delays.clear()
        return made[-1]

    yield factory
    for client in made:
        await client.close()


async def test_reads_go_to_the_region_with_the_lowest_probed_latency(make: Factory) -> None:
    platform = FakePlatform(delays={"eu": 0.03, "us": 0.03})
    platform.truth[("default", "k")] = Held(b"v", 1)
    client = await make(platform, nearest_eu=False)
    await client.probe()
    item = await client.get("default", "k")
    assert item is not None and item.region == "ap"
    assert [s.name for s in client.status() if s.latency is not None] == ["eu", "us", "ap"]
    await client.close()


async def test_without_probes_reads_measure_each_region_in_configured_order(
    make: Factory,
) -> None:
    platform = FakePlatform(delays={"us": 0.02, "ap": 0.02})
    platform.truth[("default", "k")] = Held(b"v", 1, "text/plain")
    client = await make(platform, nearest_eu=False)
    item = await client.get("default", "k")
    assert item is not None
    assert (item.value, item.version, item.content_type) == (b"v", 1, "text/plain")
    assert (item.cache, item.region, item.age) == ("HIT", "eu", 3)
    assert await client.get("default", "absent") is None  # a 404 is an answer, not a failure
    for _ in range(3):
        await client.get("default", "k")
    assert platform.requests("GET") == ["eu", "us", "ap", "eu", "eu"]
    assert all(s.latency is not None and s.healthy for s in client.status())


async def test_failover_on_connection_errors_and_5xx_but_not_on_4xx(make: Factory) -> None:
    platform = FakePlatform(down={"eu"}, answers={"us": (503, "store_unavailable")})
    platform.truth[("default", "k")] = Held(b"v", 1)
    client = await make(platform, nearest_eu=False)
    item = await client.get("default", "k")
    assert item is not None and item.region == "ap"
    assert platform.requests("GET") == ["eu", "us", "ap"]
    assert [s.healthy for s in client.status()] == [False, False, True]
    platform.down.clear()
    platform.answers.clear()
    platform.answers["ap"] = (400, "invalid_key")
    with pytest.raises(errors.InvalidInput):
        await client.get("default", "k")
    assert platform.requests("GET")[-1] == "ap"  # no failover on a 4xx
    assert client.status()[2].healthy


async def test_origin_failures_are_not_failover(make: Factory) -> None:
    platform = FakePlatform(answers={r: (502, "origin_unavailable") for r in URLS})
    client = await make(platform, nearest_eu=False)
    with pytest.raises(errors.OriginUnavailable):
        await client.get("default", "k")
    assert platform.requests("GET") == ["eu"]
    assert all(s.healthy for s in client.status())


async def test_a_region_whose_home_is_down_stays_healthy_and_the_next_one_is_asked(
    make: Factory,
) -> None:
    """503 home_unavailable says the key's home is down, not the region: the region is
    not backed off (so it keeps serving what it holds) and the next region, which may
    hold a copy, answers the read."""
    platform = FakePlatform(answers={"eu": (503, "home_unavailable")})
    platform.truth[("default", "k")] = Held(b"v", 1)
    client = await make(platform, nearest_eu=False)
    item = await client.get("default", "k")
    assert item is not None and item.region == "us"
    assert all(s.healthy for s in client.status())
    platform.answers.clear()
    platform.truth[("default", "other")] = Held(b"w", 2)
    assert (await client.get("default", "other")).region == "eu"
    # every region waits on the home: the read says so, and still nobody is backed off
    platform.answers.update({r: (503, "home_unavailable") for r in URLS})
    with pytest.raises(errors.HomeUnavailable):
        await client.get("default", "k")
    assert all(s.healthy for s in client.status())


async def test_writes_go_straight_to_the_home_region(make: Factory) -> None:
    platform = FakePlatform()
    client = await make(platform)
    result = await client.put("default", "k", b"v", ttl=30, tags=["t"], content_type="text/plain")
    assert (result.home_region, result.forwarded_by) == ("us", None)
    await client.put("euro", "k", b"v")
    await client.delete("default", "k")
    await client.invalidate_namespace("euro")
    tag = await client.invalidate_tag("default", "t")
    assert (tag.ns, tag.tag, tag.version) == ("default", "t", 9)
    writes = [(r, m) for r, m, p, _ in platform.seen if m in ("PUT", "DELETE") or "invalidate" in p]
    assert writes == [
        ("us", "PUT"),
        ("eu", "PUT"),
        ("us", "DELETE"),
        ("eu", "POST"),
        ("us", "POST"),
    ]
    assert not [r for r, *_ in platform.seen if "->" in r]  # nothing was forwarded
    # each namespace's config was read once, from the nearest region
    assert platform.config_reads() == ["eu", "eu"]


async def test_hash_namespaces_write_to_each_keys_home(make: Factory) -> None:
    platform = FakePlatform()
    client = await make(platform)
    for i in range(12):
        result = await client.put("hashed", f"k{i}", b"v")
        assert platform.seen[-1][0] == platform.home_of("hashed", f"k{i}") == result.home_region
    assert len(set(platform.requests("PUT"))) == 3
    await client.invalidate_namespace("hashed")
    assert platform.seen[-1][0] == platform.home_of("hashed", None)
    assert not [r for r, *_ in platform.seen if "->" in r]


async def test_an_unreadable_config_falls_back_to_the_nearest_region(make: Factory) -> None:
    platform = FakePlatform(forbidden_config={"default"})
    client = await make(platform)
    await client.put("default", "k1", b"v")
    await client.put("default", "k2", b"v")
    assert platform.requests("PUT") == ["eu", "eu"]
    assert ("eu->us", "PUT") in [(r, m) for r, m, *_ in platform.seen]
    assert platform.config_reads() == ["eu"]  # the 403 is cached too


async def test_an_unreachable_home_raises_and_nothing_is_written_elsewhere(make: Factory) -> None:
    platform = FakePlatform(down={"us"})
    client = await make(platform, nearest_eu=False)
    with pytest.raises(errors.HomeUnavailable) as caught:
        await client.put("default", "k", b"v")
    assert caught.value.home_region == "us"
    with pytest.raises(errors.HomeUnavailable, match="backing off"):
        await client.delete("default", "k")  # in backoff: not even tried
    assert platform.requests("PUT") == ["us"] and platform.requests("DELETE") == []
    assert (await client.put("euro", "k", b"v")).home_region == "eu"  # other homes still work


async def test_a_forwarded_write_moves_on_only_if_it_was_never_sent(make: Factory) -> None:
    platform = FakePlatform(forbidden_config={"default"})
    client = await make(platform)
    assert (await client.put("default", "k", b"v")).forwarded_by == "eu"
    platform.down.add("eu")
    await client.put("default", "k", b"v")  # eu refused the connection: the next one took it
    assert platform.requests("PUT")[1:] in (["eu", "us"], ["eu", "ap"])
    platform.slow.update({"us", "ap"})
    with pytest.raises(errors.UnavailableError, match="may have been applied") as caught:
        await client.put("default", "k", b"v")  # sent, then timed out: never sent twice
    assert type(caught.value) is errors.UnavailableError
    assert len(platform.requests("PUT")) == 4


async def test_a_forwarding_region_reports_an_unreachable_home(make: Factory) -> None:
    platform = FakePlatform(forbidden_config={"default"}, down={"us"})
    client = await make(platform, nearest_eu=False)
    with pytest.raises(errors.HomeUnavailable) as caught:
        await client.put("default", "k", b"v")
    assert caught.value.status == 503 and client.status()[0].healthy


async def test_reads_after_writes_carry_min_version(make: Factory) -> None:
    platform = FakePlatform()
    platform.truth[("default", "k")] = platform.copies["eu"][("default", "k")] = Held(b"old", 1)
    client = await make(platform)
    assert (item := await client.get("default", "k")) is not None and item.value == b"old"
    put = await client.put("default", "k", b"new")
    # eu still holds the old copy (its invalidation has not arrived), yet:
    item = await client.get("default", "k")
    assert item is not None and (item.value, item.version) == (b"new", put.version)
    assert platform.seen[-1][3] == {"min_version": str(put.version)}
    assert platform.copies["eu"][("default", "k")].version == put.version
    assert "min_version" not in platform.seen[0][3]


async def test_a_read_after_a_delete_never_returns_the_older_value(make: Factory) -> None:
    platform = FakePlatform()
    platform.truth[("default", "k")] = platform.copies["eu"][("default", "k")] = Held(b"old", 1)
    client = await make(platform)
    tombstone = await client.delete("default", "k")
    assert tombstone is not None
    assert await client.get("default", "k") is None
    assert platform.seen[-1][3] == {"min_version": str(tombstone)}


async def test_batch_get_reads_again_what_is_older_than_our_writes(make: Factory) -> None:
    platform = FakePlatform()
    for key in ("a", "b", "c"):
        platform.truth[("default", key)] = platform.copies["eu"][("default", key)] = Held(b"old", 1)
    client = await make(platform)
    await client.put("default", "a", b"new")
    await client.delete("default", "b")
    got = await client.batch_get("default", ["a", "b", "c", "missing"])
    assert list(got) == ["a", "b", "c", "missing"]
    assert got["a"] is not None and got["a"].value == b"new"
    assert got["b"] is None and got["missing"] is None
    assert got["c"] is not None and (got["c"].value, got["c"].region) == (b"old", "eu")
    refetched = [p for r, m, p, q in platform.seen if m == "GET" and "min_version" in q]
    assert refetched == ["/v1/ns/default/keys/a", "/v1/ns/default/keys/b"]
    assert await client.batch_get("default", []) == {}


async def test_conditional_writes_raise_typed_errors(make: Factory) -> None:
    platform = FakePlatform()
    client = await make(platform)
    await client.put("default", "k", b"v")
    with pytest.raises(errors.PreconditionFailed) as caught:
        await client.put("default", "k", b"v", if_none_match=True)
    assert caught.value.current_version == platform.clock
    assert platform.headers_seen[-1]["if-none-match"] == "*"


async def test_discover_reads_the_regions_from_one_url(make: Factory) -> None:
    platform = FakePlatform()
    client = await make(platform, discover="http://us.test", api_key="s3cret")
    assert [s.name for s in client.status()] == ["us", "eu", "ap"]  # the seed first
    info = await client.info()
    assert info.region == "eu" and info.regions == URLS  # from the nearest region
    assert all(h["authorization"] == "Bearer s3cret" for h in platform.headers_seen)
    result = await client.put("hashed", "x", b"v")
    assert platform.seen[-1][0] == result.home_region


async def test_namespace_answers_and_caches_the_home(make: Factory) -> None:
    platform = FakePlatform()
    client = await make(platform)
    namespace = await client.namespace("euro")
    assert (namespace.ns, namespace.home_region, namespace.default_ttl) == ("euro", "eu", 60.0)
    await client.put("euro", "k", b"v")
    assert platform.config_reads() == ["eu"]


async def test_start_and_stop_own_the_background_probes(make: Factory) -> None:
    platform = FakePlatform()
    client = await make(platform, nearest_eu=False, options=ClientOptions(probe_interval=0.01))
    await client.start()
    assert platform.probes() == 3  # one round at once, before start() returns
    inner = client.inner
    running = inner._probing
    assert running is not None
    deadline = time.monotonic() + 5
    while platform.probes() < 9:
        assert time.monotonic() < deadline, "the background probes did not run"
        await asyncio.sleep(0.01)  # the sync client's thread probes meanwhile
    await client.stop()
    assert inner._probing is None
    if isinstance(running, threading.Thread):
        assert not running.is_alive()
    else:
        assert running.done()
    settled = platform.probes()
    await asyncio.sleep(0.05)
    assert platform.probes() == settled
    await client.start()  # again after a stop
    assert inner._probing is not None
    await client.close()
    assert inner._probing is None


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="timeout"):
        ClientOptions(timeout=0)
    with pytest.raises(ValueError, match="backoff_max"):
        ClientOptions(backoff_initial=5, backoff_max=1)
    with pytest.raises(ValueError, match="jitter"):
        ClientOptions(backoff_jitter=2)
    with pytest.raises(ValueError, match="at least one region"):
        MrcacheClient({})


def test_jitter_spreads_backoffs() -> None:
    router = Router(URLS, ClientOptions(), clock=FakeClock(), rng=random.Random(7))
    waits = set()
    for region in URLS:
        router.failed(region, "x")
        waits.add(router.retry_in(region))
    assert len(waits) == 3 and all(0.25 <= w <= 0.375 for w in waits)
