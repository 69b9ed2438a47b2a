"""The meter against ground truth: known staleness of every kind, its counts checked
against what was built and against an independent client's reads.

A real ``mrcache up`` (us-east, eu-west; every key's home is us-east) with the
reconciler idle and the recent-change lane off. Copies are seeded in both regions
while the relays apply everything; then both relays drop every event (the home
still applies its own API writes and invalidations directly) and, with the meter
following the topics, the test makes one invalidation of each kind per key:

====== ======================================== ======================= ====================
group  what happens                             eu-west serves           us-east (home) serves
====== ======================================== ======================= ====================
key    PUT v2                                   v1: stale               v2: fresh
delete DELETE                                   v1: stale               its delete: fresh
ns     namespace invalidation                   the voided copy: stale  nothing: not cached
tag    tag invalidation                         the voided copy: stale  nothing: not cached
swr    PUT v2 (v1 expired, stale-while-reval.)  v1 as STALE: stale      v2: fresh
dbz    Debezium update to version 5             version 3: stale        version 3: stale
neg    Debezium create of a key the origin 404s nothing: not cached     its 404: stale
====== ======================================== ======================= ====================

A third region that only answers 504 must show every check as an error. At sample
rate 1 the meter's counts must equal these exactly, and a client that then reads
every key once with a plain GET must see the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from libs.common.config import load_platform_config
from libs.common.homes import home_finder
from libs.common.settings import KafkaSettings
from services.meter.meter import Meter
from services.meter.report import Report
from tests.support.cluster import Up, running_platform
from tests.support.origin_server import OriginServer
from tests.support.platform import eventually

REGIONS = ("us-east", "eu-west")
STUB = "ap-south"
N = 6
DELAY = 2.0
DBZ_TOPIC = "dbz.public.rows"
CONFIG = """
[platform]
regions = ["us-east", "eu-west"]

[reconciler]
interval = 3600

[faults]
control = true

[namespaces.default]
home_region = "us-east"

[namespaces.swr]
home_region = "us-east"
stale_while_revalidate = 600

[namespaces.rows]
home_region = "us-east"
origin = "{origin}"
negative_ttl = 600

[[relay.debezium]]
topic = "{topic}"
ns = "rows"
key = "{{id}}"
version = "version"
"""
# group -> (namespace, what eu-west is, what the home is)
EXPECTED = {
    "key": ("default", "stale", "fresh"),
    "delete": ("default", "stale", "fresh"),
    "ns": (None, "stale", "not_cached"),
    "tag": ("default", "stale", "not_cached"),
    "swr": ("swr", "stale", "fresh"),
    "dbz": ("rows", "stale", "stale"),
    "neg": ("rows", "not_cached", "stale"),
}


class _Stub(BaseHTTPRequestHandler):
    """A region that answers every request with a gateway error."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = b"upstream timed out"
        self.send_response(504)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST


@contextlib.contextmanager
def stub_region() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def debezium(row_id: str, version: int, op: str = "u") -> bytes:
    after = {"id": row_id, "name": f"row {row_id}", "version": version}
    before = None if op == "c" else {**after, "version": version - 1}
    payload = {
        "before": before,
        "after": after,
        "source": {"connector": "postgresql", "name": "dbz", "ts_ms": 1, "lsn": version},
        "op": op,
        "ts_ms": int(time.time() * 1000),
    }
    return orjson.dumps({"schema": {}, "payload": payload})


class Truth:
    """The platform, the seeded keys and a client per region."""

    def __init__(self, up: Up, config: Path) -> None:
        cluster = up.cluster()
        self.kafka: str = cluster["kafka"]
        self.services: dict[str, str] = cluster["services"]
        self.urls = {r: cluster["regions"][r]["url"] for r in REGIONS}
        self.http = {r: httpx.Client(base_url=u, timeout=10.0) for r, u in self.urls.items()}
        self.platform = load_platform_config(config)
        prefix = uuid.uuid4().hex[:6]
        self.ns_group = f"inv-{prefix}"
        self.keys = {group: [f"{group}-{prefix}-{i}" for i in range(N)] for group in EXPECTED}

    def close(self) -> None:
        for client in self.http.values():
            client.close()

    def ns(self, group: str) -> str:
        return EXPECTED[group][0] or self.ns_group

    def path(self, group: str, key: str) -> str:
        return f"/v1/ns/{self.ns(group)}/keys/{key}"

    def put(self, group: str, key: str, body: bytes, **params: str) -> None:
        r = self.http["us-east"].put(self.path(group, key), content=body, params=params)
        assert r.status_code == 200, r.text

    def read(self, region: str, group: str, key: str) -> httpx.Response:
        return self.http[region].get(self.path(group, key))

    def drop_events(self, rate: float) -> None:
        for region in REGIONS:
            relay = self.services[f"invalidation_relay:{region}"]
            assert httpx.put(f"{relay}/v1/faults", json={"drop_rate": rate}).status_code == 200

    def publish(self, messages: list[tuple[bytes, bytes]]) -> None:
        async def send() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=self.kafka, acks="all")
            await producer.start()
            try:
                for key, value in messages:
                    await producer.send_and_wait(DBZ_TOPIC, value, key=key)
            finally:
                await producer.stop()

        asyncio.run(send())

    def seed(self, origin: OriginServer) -> None:
        """v1 of every key at home, read into eu-west (so eu-west holds a copy)."""
        origin.control(absent=self.keys["neg"])
        for group in ("key", "delete", "ns", "tag"):
            for key in self.keys[group]:
                self.put(group, key, b"v1", **({"tags": "red"} if group == "tag" else {}))
        for key in self.keys["swr"]:
            self.put("swr", key, b"v1", ttl="1")
        for key in self.keys["dbz"]:
            self.put("dbz", key, b"v3", version="3")
        for group in ("key", "delete", "ns", "tag", "swr", "dbz"):
            for key in self.keys[group]:
                r = self.read("eu-west", group, key)
                assert r.status_code == 200 and r.headers["x-cache"] == "MISS", r.text
        for key in self.keys["neg"]:  # the home remembers the origin's 404
            assert self.read("us-east", "neg", key).status_code == 404

    def invalidate(self) -> None:
        """One invalidation of each kind per group, each lost by both relays."""
        us = self.http["us-east"]
        for key in self.keys["key"]:
            self.put("key", key, b"v2")
        for key in self.keys["delete"]:
            assert us.delete(self.path("delete", key)).status_code == 204
        assert us.post(f"/v1/ns/{self.ns_group}/invalidate").status_code == 202
        assert us.post("/v1/ns/default/tags/red/invalidate").status_code == 202
        for key in self.keys["swr"]:
            self.put("swr", key, b"v2")
        self.publish(
            [(orjson.dumps({"id": k}), debezium(k, 5)) for k in self.keys["dbz"]]
            + [(orjson.dumps({"id": k}), debezium(k, 1, "c")) for k in self.keys["neg"]]
        )

    def client_view(self, region: str, group: str, key: str) -> str:
        """What a client is served, judged from a plain GET alone."""
        r = self.read(region, group, key)
        if r.status_code == 404:
            remembered = "recently" in r.json()["error"]["message"]  # the origin's 404
            if group == "delete":
                return "fresh"
            return "stale" if remembered else "not_cached"
        assert r.status_code == 200, r.text
        if r.headers["x-cache"] == "MISS":
            return "not_cached"
        if group in ("ns", "tag", "delete"):
            return "stale"  # a copy served from before the invalidation or the delete
        version = int(r.headers["etag"].strip('"'))
        newest = {"dbz": 5}.get(group)
        if newest is None:
            newest = int(self.read("us-east", group, key).headers["etag"].strip('"'))
        return "stale" if version < newest else "fresh"


@pytest.fixture(scope="module")
def truth(tmp_path_factory: pytest.TempPathFactory, origin: OriginServer) -> Iterator[Truth]:
    config = CONFIG.format(origin=origin.url("/items/{key}"), topic=DBZ_TOPIC)
    env = {"MRCACHE_RECENT_CHECKS": "false"}
    workdir = tmp_path_factory.mktemp("truth")
    with running_platform(workdir, REGIONS, config=config, env=env) as up:
        platform = Truth(up, up.state_dir.parent / "mrcache.toml")
        try:
            yield platform
        finally:
            platform.close()


def run_meter(truth: Truth, origin: OriginServer, stub_url: str) -> Report:
    async def go() -> Report:
        urls = {**truth.urls, STUB: stub_url}
        meter = Meter(
            KafkaSettings(bootstrap=truth.kafka),
            urls,
            sample_rate=1.0,
            delays=[DELAY],
            home_of=home_finder(truth.platform),
            debezium=truth.platform.relay.debezium,
        )
        await meter.start()
        try:
            await meter.wait_ready(30)
            # the seeding's writes teach the meter which keys the namespace and tag hold,
            # and are not measured themselves (they go by before since_ms)
            meter.since_ms = 2**62
            await asyncio.to_thread(truth.seed, origin)
            await asyncio.to_thread(truth.drop_events, 1.0)
            # only what follows is measured
            meter.since_ms = int(time.time() * 1000)
            await asyncio.to_thread(truth.invalidate)

            def sampled() -> bool:
                return meter.report().sampled_events >= 5 * N + 2

            deadline = time.monotonic() + 30
            while not sampled():
                assert time.monotonic() < deadline, meter.report().as_dict()
                await asyncio.sleep(0.05)
            assert await meter.drain(DELAY + 20)
            return meter.report()
        finally:
            await meter.stop()

    return asyncio.run(go())


def test_the_meter_counts_what_clients_are_served(truth: Truth, origin: OriginServer) -> None:
    with stub_region() as stub_url:
        report = run_meter(truth, origin, stub_url)
    rows = {(row.region, row.home): row for row in report.rows}
    printed = "\n".join(str(row.cells()) for row in report.rows)

    # every invalidation was sampled, of every kind
    # (the swr group's writes are key events too)
    assert report.sampled == {
        "key": 2 * N,
        "delete": N,
        "namespace": 1,
        "tag": 1,
        "debezium": 2 * N,
    }, report.sampled

    built = {region: Counter[str]() for region in ("eu-west", "us-east")}
    for _, away_is, home_is in EXPECTED.values():
        built["eu-west"][away_is] += N
        built["us-east"][home_is] += N
    eu, home = rows["eu-west", False], rows["us-east", True]
    assert (eu.fresh, eu.stale, eu.not_cached, eu.errors) == (
        built["eu-west"]["fresh"],
        built["eu-west"]["stale"],
        built["eu-west"]["not_cached"],
        0,
    ), printed
    assert (home.fresh, home.stale, home.not_cached, home.errors) == (
        built["us-east"]["fresh"],
        built["us-east"]["stale"],
        built["us-east"]["not_cached"],
        0,
    ), printed
    assert eu.late == 0 and home.late == 0, printed
    # no key's home is eu-west; us-east checks are all of home keys
    assert rows["eu-west", True].checks == 0 and rows["us-east", False].checks == 0
    # the stub is all errors, never fresh, and its errors stay out of the fraction
    stub = rows[STUB, False]
    assert stub.errors == 7 * N and stub.fresh == stub.stale == stub.not_cached == 0, printed
    assert stub.cells()[8] == "-"
    # the bound: 36 stale of 36 served in eu-west supports no nines
    assert eu.as_dict()["nines"] == 0.0

    # an independent client, reading each key once with a plain GET, sees the same
    seen = {region: Counter[str]() for region in ("eu-west", "us-east")}
    for group in EXPECTED:
        for key in truth.keys[group]:
            for region in ("eu-west", "us-east"):
                seen[region][truth.client_view(region, group, key)] += 1
    assert seen == built, (seen, built)


def test_probing_changes_nothing(truth: Truth, origin: OriginServer) -> None:
    """The probe route fills nothing, refreshes nothing and counts toward no hot key."""
    swr, absent = f"probe-{uuid.uuid4().hex[:6]}", f"probe-{uuid.uuid4().hex[:6]}"
    truth.put("swr", swr, b"v1", ttl="1")
    r = truth.read("eu-west", "swr", swr)
    assert r.headers["x-cache"] == "MISS"
    origin.control(absent=[absent])
    eu = truth.urls["eu-west"]

    def probe(ns: str, key: str) -> dict[str, Any]:
        r = httpx.post(f"{eu}/internal/v1/probe", json={"items": [{"ns": ns, "key": key}]})
        assert r.status_code == 200, r.text
        item: dict[str, Any] = r.json()["items"][0]
        return item

    eventually(lambda: probe("swr", swr)["state"] == "stale", timeout=10, what="v1 expired")
    requests_before = origin.stats()["total"]
    for _ in range(50):
        assert probe("swr", swr)["state"] == "stale"  # no refresh replaced it
        assert probe("rows", absent)["state"] == "absent"  # no fill
    assert origin.stats()["total"] == requests_before
    single = httpx.get(f"{eu}/internal/v1/ns/swr/probe/{swr}").json()
    assert single["state"] == "stale" and single["version"] > 0 and single["region"] == "eu-west"
    bad = httpx.post(f"{eu}/internal/v1/probe", json={"items": [{"ns": "Bad NS", "key": "k"}]})
    assert bad.status_code == 400
    too_many = [{"ns": "swr", "key": f"k{i}"} for i in range(501)]
    assert httpx.post(f"{eu}/internal/v1/probe", json={"items": too_many}).status_code == 400
