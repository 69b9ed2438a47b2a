"""The client SDK against real regions: three regional_cache processes, each on its own
redis-server, over the session's broker, plus a delay proxy that puts chosen regions
"far away" (services/cli/delayproxy.py: 25 ms each way).

No relays run, on purpose: no region ever learns of another region's writes from
events, so every non-home copy stays exactly as stale as a relay that lags forever
would leave it. Whatever a client reads fresh there, it reads fresh because of
``min_version``. The regions are started one by one (not with ``mrcache up``, which
stops everything when one child dies), so a test can SIGKILL one region's process
and start it again. Nothing sleeps to wait: polls with deadlines only.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from libs.client import (
    AsyncMrcacheClient,
    ClientOptions,
    HomeUnavailable,
    MrcacheClient,
    PutResult,
)
from libs.common.config import NamespaceConfig
from libs.common.homes import home_region
from libs.common.processes import ManagedProcess, free_port, wait_port
from services.regional_cache.routes.keys import KEY_PATH
from tests.support.platform import (
    Broker,
    RedisServer,
    Service,
    eventually,
    service_env,
    start_redis,
    start_service,
)
from tests.support.relay import own_topics, sample

REGIONS = ("us-east", "eu-west", "ap-south")
CONFIG = """
[platform]
regions = ["us-east", "eu-west", "ap-south"]

[namespaces.default]
home_region = "us-east"

[namespaces.euro]
home_region = "eu-west"

[namespaces.hashed]
home_region = "hash"
"""
DELAY_MS = 25  # one way: every request through the proxy costs 50 ms more
REPO = Path(__file__).resolve().parents[2]
# probes often, so tests see a dead or returning region within a fraction of a second
FAST = ClientOptions(probe_interval=0.2, probe_timeout=1.0, timeout=5.0)


@dataclass
class Region:
    name: str
    env: dict[str, str]
    redis: RedisServer
    service: Service
    far_port: int  # the delay proxy's port in front of this region

    @property
    def url(self) -> str:
        return self.service.url

    @property
    def far_url(self) -> str:
        return f"http://127.0.0.1:{self.far_port}"


@dataclass
class Platform:
    workdir: Path
    regions: dict[str, Region]

    def urls(self, near: str) -> dict[str, str]:
        """Client configuration: ``near`` first and direct, the others behind the proxy."""
        return {near: self.regions[near].url} | {
            n: r.far_url for n, r in self.regions.items() if n != near
        }

    def kill(self, name: str) -> None:
        self.regions[name].service.proc.kill()

    def restart(self, name: str) -> None:
        region = self.regions[name]
        region.service = start_service(self.workdir, region.env)

    def key_requests(self, name: str) -> float:
        """Requests the region served on the key route (PUT, GET and DELETE)."""
        return self._requests(name, KEY_PATH)

    def invalidations(self, name: str) -> float:
        return self._requests(name, "/v1/ns/{ns}/invalidate") + self._requests(
            name, "/v1/ns/{ns}/tags/{tag}/invalidate"
        )

    def _requests(self, name: str, route: str) -> float:
        text = httpx.get(f"{self.regions[name].url}/metrics", timeout=5.0).text
        return sample(text, "mrcache_requests_total", route=route)

    def raw_get(self, name: str, ns: str, key: str) -> httpx.Response:
        """A plain read of one region, without the client (and without min_version)."""
        return httpx.get(f"{self.regions[name].url}/v1/ns/{ns}/keys/{key}", timeout=5.0)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, broker: Broker) -> Iterator[Platform]:
    workdir = tmp_path_factory.mktemp("client")
    config = workdir / "mrcache.toml"
    config.write_text(CONFIG)
    kafka = asyncio.run(own_topics(broker.bootstrap))
    redises: list[RedisServer] = []
    services: list[Service] = []
    proxy: ManagedProcess | None = None
    try:
        for _ in REGIONS:
            redises.append(start_redis(workdir))
        ports = [free_port() for _ in REGIONS]
        urls = {name: f"http://127.0.0.1:{port}" for name, port in zip(REGIONS, ports, strict=True)}
        envs = [
            service_env(
                name,
                port,
                redis.url,
                broker.bootstrap,
                MRCACHE_CONFIG=str(config),
                MRCACHE_REGION_URLS=json.dumps(urls),
                MRCACHE_KAFKA__TOPIC=kafka.topic,
                MRCACHE_KAFKA__DLQ_TOPIC=kafka.dlq_topic,
            )
            for name, port, redis in zip(REGIONS, ports, redises, strict=True)
        ]
        # one after the other from this thread: a child gets its parent-death signal when
        # the thread that started it ends, so a thread pool would stop them at once
        for env in envs:
            services.append(start_service(workdir, env))
        far_ports = [free_port() for _ in REGIONS]
        routes = [
            f"127.0.0.1:{far}=127.0.0.1:{near}" for far, near in zip(far_ports, ports, strict=True)
        ]
        argv = [sys.executable, "-m", "services.cli.delayproxy", "--delay-ms", str(DELAY_MS)]
        for route in routes:
            argv += ["--route", route]
        proxy = ManagedProcess(
            "delay-proxy", argv, workdir / "delay-proxy.log", env={"PYTHONPATH": str(REPO)}
        ).start()
        for port in far_ports:
            wait_port(proxy, port)
        regions = {
            name: Region(name, env, redis, service, far)
            for name, env, redis, service, far in zip(
                REGIONS, envs, redises, services, far_ports, strict=True
            )
        }
        platform = Platform(workdir, regions)
        yield platform
        services = [r.service for r in platform.regions.values()]  # restarted ones included
    finally:
        if proxy is not None:
            proxy.stop()
        for service in services:
            service.proc.stop()
        for redis in redises:
            if redis.proc is not None:
                redis.proc.stop()


def unique(prefix: str = "k") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def test_writes_go_straight_to_their_home_region(platform: Platform) -> None:
    """(1) No write takes a forwarding hop: every region serves exactly its own writes."""
    hashed = NamespaceConfig(home_region="hash")
    writes = [("default", unique(), "us-east"), ("euro", unique(), "eu-west")]
    writes += [
        ("hashed", key, home_region(hashed, REGIONS, "hashed", key))
        for key in (unique("h") for _ in range(12))
    ]
    assert {home for *_, home in writes} == set(REGIONS)
    async with AsyncMrcacheClient(platform.urls(near="ap-south"), options=FAST) as client:
        # the namespace configs are read before counting (from ap-south, the nearest)
        for name in ("default", "euro", "hashed"):
            await client.namespace(name)
        before = {name: platform.key_requests(name) for name in REGIONS}
        invalidations = {name: platform.invalidations(name) for name in REGIONS}
        for ns, key, home in writes:
            result = await client.put(ns, key, b"value", ttl=60)
            assert result.forwarded_by is None, f"{ns}/{key} was forwarded"
            assert result.home_region == home
        for ns, key, _ in writes[:2]:
            assert await client.delete(ns, key) is not None
        await client.invalidate_namespace("euro")
        await client.invalidate_tag("default", "sale")
    expected = {name: sum(1 for *_, home in writes if home == name) for name in REGIONS}
    expected["us-east"] += 1  # the deletes
    expected["eu-west"] += 1
    after = {name: platform.key_requests(name) - before[name] for name in REGIONS}
    assert after == expected  # ap-south, the nearest, served only the writes homed there
    assert {n: platform.invalidations(n) - invalidations[n] for n in REGIONS} == {
        "us-east": 1,
        "eu-west": 1,
        "ap-south": 0,
    }


def test_read_your_writes_through_a_nearer_region(platform: Platform) -> None:
    """(2) Writes at home (us-east), then at once reads through eu-west, which holds v1."""
    one, many = unique(), unique()
    with MrcacheClient(platform.urls(near="eu-west"), options=FAST) as client:
        for key in (one, many):
            client.put("default", key, b"v1")
            first = client.get("default", key)
            assert first is not None and (first.value, first.region) == (b"v1", "eu-west")
            assert first.cache == "MISS"  # eu-west filled its copy of v1 from the home region
        v2 = client.put("default", one, b"v2", content_type="text/plain").version
        client.put("default", many, b"v2")
        for key in (one, many):
            # eu-west's own copy is still v1 for anyone who does not carry the version ...
            stale = platform.raw_get("eu-west", "default", key)
            assert stale.content == b"v1" and stale.headers["x-cache"] == "HIT"
        with MrcacheClient(platform.urls(near="eu-west")) as other:
            seen = other.get("default", one)  # ... such as a client that never wrote it
            assert seen is not None and (seen.value, seen.region) == (b"v1", "eu-west")

        got = client.get("default", one)
        assert got is not None
        assert (got.value, got.version, got.content_type) == (b"v2", v2, "text/plain")
        assert got.region == "eu-west"
        # batchGet takes no min_version: eu-west answers v1, the client reads the key again
        batch = client.batch_get("default", [many])[many]
        assert batch is not None and (batch.value, batch.region) == (b"v2", "eu-west")

        # a delete, then a read: None, never the older value eu-west still holds
        for key in (one, many):
            client.delete("default", key)
            assert platform.raw_get("eu-west", "default", key).status_code == 200
        assert client.get("default", one) is None
        assert client.batch_get("default", [many]) == {many: None}


async def test_reads_prefer_the_region_with_the_lowest_latency(platform: Platform) -> None:
    """(4) The first configured region is behind the delay proxy: reads avoid it."""
    key = unique()
    urls = {
        "us-east": platform.regions["us-east"].far_url,
        "eu-west": platform.regions["eu-west"].url,
        "ap-south": platform.regions["ap-south"].far_url,
    }
    async with AsyncMrcacheClient(urls, options=FAST) as client:
        await client.put("default", key, b"x")
        measured = {s.name: s.latency for s in client.status()}
        near, far = measured["eu-west"], measured["us-east"]
        assert near is not None and far is not None and far > near + 0.04
        for _ in range(5):
            item = await client.get("default", key)
            assert item is not None and item.region == "eu-west"
    # the same regions, the delay moved: the choice follows the latency, not the order
    urls["eu-west"] = platform.regions["eu-west"].far_url
    urls["us-east"] = platform.regions["us-east"].url
    async with AsyncMrcacheClient(urls, options=FAST) as client:
        item = await client.get("default", key)
        assert item is not None and item.region == "us-east"


def test_failover_when_the_nearest_region_dies_and_back_when_it_returns(
    platform: Platform,
) -> None:
    """(3) SIGKILL eu-west's regional_cache: reads move, live homes keep taking writes."""
    keys = [unique() for _ in range(5)]
    with MrcacheClient(platform.urls(near="eu-west"), options=FAST) as client:
        for key in keys:
            client.put("default", key, b"before")
        euro = unique()
        client.put("euro", euro, b"homed in eu-west")
        item = client.get("default", keys[0])
        assert item is not None and item.region == "eu-west"

        platform.kill("eu-west")
        try:
            for key in keys:  # the first read meets the dead region and fails over at once
                item = client.get("default", key)
                assert item is not None and item.value == b"before"
                assert item.region in ("us-east", "ap-south")
            eu = next(s for s in client.status() if s.name == "eu-west")
            assert not eu.healthy and eu.last_error
            # writes homed in a live region go on; read-your-writes still holds
            written = client.put("default", keys[0], b"during")
            during = client.get("default", keys[0])
            assert during is not None and during.version == written.version
            hashed = [k for k in (unique("h") for _ in range(30)) if home_of(k) != "eu-west"]
            for key in hashed[:5]:
                assert client.put("hashed", key, b"x").home_region != "eu-west"
            # a write homed in the dead region fails, and is not written anywhere else
            with pytest.raises(HomeUnavailable) as caught:
                client.put("euro", euro, b"lost")
            assert caught.value.home_region == "eu-west"
        finally:
            platform.restart("eu-west")

        # the probes see it back; reads return to the nearest region
        def back() -> bool:
            got = client.get("default", keys[1])
            return got is not None and got.region == "eu-west"

        eventually(back, timeout=15.0, what="reads back in eu-west")
        result = eventually(
            lambda: _try_put(client, "euro", euro, b"after"),
            timeout=15.0,
            what="writes homed in eu-west accepted again",
        )
        assert result.home_region == "eu-west"
        after = client.get("euro", euro)
        assert after is not None and after.value == b"after"


def home_of(key: str) -> str:
    return home_region(NamespaceConfig(home_region="hash"), REGIONS, "hashed", key)


def _try_put(client: MrcacheClient, ns: str, key: str, value: bytes) -> PutResult | None:
    try:
        return client.put(ns, key, value)
    except HomeUnavailable:
        return None


async def test_discover_finds_every_region_from_one_url(platform: Platform) -> None:
    client = await AsyncMrcacheClient.discover(platform.regions["ap-south"].url)
    try:
        names = [s.name for s in client.status()]
        assert names == ["ap-south", "us-east", "eu-west"]  # the seed region first
        info = await client.info()
        assert info.regions == {n: r.url for n, r in platform.regions.items()}
        key = unique("h")
        result = await client.put("hashed", key, b"x")
        assert result.forwarded_by is None and result.home_region == home_of(key)
        item = await client.get("hashed", key)
        assert item is not None and item.version == result.version
    finally:
        await client.close()
