"""/v1/info, health, readiness, metrics, namespace config, and the events of every change."""

from __future__ import annotations

import httpx

from tests.support.kafka import collect_events
from tests.support.platform import Broker


def test_info(client: httpx.Client) -> None:
    info = client.get("/v1/info").json()
    assert info["region"] == "us-east"
    assert "us-east" in info["regions"]
    assert info["version"]
    assert "eviction" in info


def test_health_and_readiness(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_metrics_expose_the_api_md_names(client: httpx.Client, ns: str) -> None:
    client.put(f"/v1/ns/{ns}/keys/m", content=b"x")
    client.get(f"/v1/ns/{ns}/keys/m")
    client.get(f"/v1/ns/{ns}/keys/absent")
    text = client.get("/metrics").text
    for name in (
        "mrcache_requests_total",
        "mrcache_request_seconds_bucket",
        "mrcache_cache_results_total",
        "mrcache_invalidations_published_total",
    ):
        assert name in text, name
    assert 'result="hit"' in text and 'result="miss"' in text
    assert 'route="/v1/ns/{ns}/keys/{key:anypath}"' in text


def test_namespace_configuration(client: httpx.Client) -> None:
    listing = client.get("/v1/ns").json()["namespaces"]
    assert any(n["ns"] == "default" for n in listing)
    cfg = client.get("/v1/ns/whatever").json()
    for field in (
        "home_region",
        "default_ttl",
        "ttl_jitter",
        "origin",
        "negative_ttl",
        "stale_while_revalidate",
        "propagation",
    ):
        assert field in cfg
    assert cfg["home_region"] == "us-east" and cfg["configured"] is False


def test_openapi_is_served(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v1/ns/{ns}/keys/{key}" in paths or any("keys/{key" in p for p in paths)


async def test_every_change_publishes_an_event(
    client: httpx.Client, ns: str, broker: Broker
) -> None:
    v1 = client.put(f"/v1/ns/{ns}/keys/e", content=b"x").json()["version"]
    client.delete(f"/v1/ns/{ns}/keys/e")
    gen = client.post(f"/v1/ns/{ns}/invalidate").json()["generation"]
    tag_version = client.post(f"/v1/ns/{ns}/tags/red/invalidate").json()["version"]
    got = await collect_events(broker.bootstrap, want=4, ns=ns)
    # key events and namespace-wide events travel in different partitions: order per kind
    by_kind = {(e.type, e.op): e for e in got}
    assert set(by_kind) == {("key", "set"), ("key", "delete"), ("namespace", None), ("tag", None)}
    put_ev, del_ev = by_kind[("key", "set")], by_kind[("key", "delete")]
    assert put_ev.version == v1 and put_ev.key == "e" and put_ev.origin == "us-east"
    assert del_ev.version > v1
    assert [e.op for e in got if e.type == "key"] == ["set", "delete"]
    assert by_kind[("namespace", None)].version == gen
    assert by_kind[("tag", None)].version == tag_version
    assert by_kind[("tag", None)].tag == "red"
    assert len({e.id for e in got}) == 4


def test_request_ids_are_echoed_or_made(client: httpx.Client, ns: str) -> None:
    given = client.get(f"/v1/ns/{ns}/keys/x", headers={"X-Request-Id": "trace-42"})
    assert given.headers["x-request-id"] == "trace-42"
    made = client.get("/healthz").headers["x-request-id"]
    assert len(made) == 16 and made != "trace-42"
    junk = client.get("/healthz", headers={"X-Request-Id": "x" * 100}).headers["x-request-id"]
    assert len(junk) == 16
