"""PUT / GET / DELETE / batchGet against a real regional_cache, Redis and broker."""

from __future__ import annotations

import base64
import time

import httpx
import pytest


def put(
    client: httpx.Client, ns: str, key: str, body: bytes = b"v", **params: str
) -> httpx.Response:
    return client.put(f"/v1/ns/{ns}/keys/{key}", content=body, params=params)


def test_put_then_get_hit(client: httpx.Client, ns: str) -> None:
    r = client.put(
        f"/v1/ns/{ns}/keys/user:1",
        content=b'{"name":"ada"}',
        headers={"Content-Type": "application/json"},
        params={"ttl": "60"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"ns", "key", "version", "home_region", "ttl", "expires_at"}
    assert body["ns"] == ns and body["key"] == "user:1" and body["home_region"] == "us-east"
    assert 54 <= body["ttl"] <= 66  # 10 % jitter of the default namespace config
    assert body["expires_at"] == pytest.approx(time.time() + body["ttl"], abs=5)
    assert r.headers["etag"] == f'"{body["version"]}"'

    g = client.get(f"/v1/ns/{ns}/keys/user:1")
    assert g.status_code == 200
    assert g.content == b'{"name":"ada"}'
    assert g.headers["content-type"] == "application/json"
    assert g.headers["etag"] == f'"{body["version"]}"'
    assert g.headers["x-cache"] == "HIT"
    assert g.headers["x-cache-region"] == "us-east"
    assert int(g.headers["age"]) >= 0


def test_binary_values_and_default_content_type(client: httpx.Client, ns: str) -> None:
    data = bytes(range(256)) * 4
    assert client.put(f"/v1/ns/{ns}/keys/bin", content=data).status_code == 200
    g = client.get(f"/v1/ns/{ns}/keys/bin")
    assert g.content == data
    assert g.headers["content-type"] == "application/octet-stream"


def test_keys_with_slashes_unicode_and_escapes(client: httpx.Client, ns: str) -> None:
    for raw, path in [
        ("a/b/c", "a/b/c"),
        ("a/b", "a%2Fb"),
        ("日本", "%E6%97%A5%E6%9C%AC"),
        ("sp ace", "sp%20ace"),
        ("{x}", "%7Bx%7D"),
    ]:
        assert client.put(f"/v1/ns/{ns}/keys/{path}", content=raw.encode()).status_code == 200
        r = client.get(f"/v1/ns/{ns}/keys/{path}")
        assert r.status_code == 200 and r.content == raw.encode(), raw


def test_versions_increase_and_if_none_match_gives_304(client: httpx.Client, ns: str) -> None:
    v1 = put(client, ns, "k").json()["version"]
    v2 = put(client, ns, "k").json()["version"]
    assert v2 > v1
    r = client.get(f"/v1/ns/{ns}/keys/k", headers={"If-None-Match": f'"{v2}"'})
    assert r.status_code == 304 and r.headers["etag"] == f'"{v2}"'
    assert (
        client.get(f"/v1/ns/{ns}/keys/k", headers={"If-None-Match": f'"{v1}"'}).status_code == 200
    )


def test_delete_is_idempotent_and_versions_never_reused(client: httpx.Client, ns: str) -> None:
    v1 = put(client, ns, "k").json()["version"]
    assert client.delete(f"/v1/ns/{ns}/keys/k").status_code == 204
    assert client.get(f"/v1/ns/{ns}/keys/k").status_code == 404
    assert client.delete(f"/v1/ns/{ns}/keys/k").status_code == 204
    assert client.delete(f"/v1/ns/{ns}/keys/never-written").status_code == 204
    v2 = put(client, ns, "k").json()["version"]
    assert v2 > v1
    assert client.get(f"/v1/ns/{ns}/keys/k").status_code == 200


def test_not_found_is_json(client: httpx.Client, ns: str) -> None:
    r = client.get(f"/v1/ns/{ns}/keys/nothing")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_if_match_compare_and_set(client: httpx.Client, ns: str) -> None:
    v1 = put(client, ns, "cas").json()["version"]
    ok = client.put(f"/v1/ns/{ns}/keys/cas", content=b"2", headers={"If-Match": f'"{v1}"'})
    assert ok.status_code == 200
    stale = client.put(f"/v1/ns/{ns}/keys/cas", content=b"3", headers={"If-Match": f'"{v1}"'})
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "precondition_failed"
    assert client.get(f"/v1/ns/{ns}/keys/cas").content == b"2"
    absent = client.put(f"/v1/ns/{ns}/keys/none", content=b"x", headers={"If-Match": "*"})
    assert absent.status_code == 412


def test_if_none_match_star_only_if_absent(client: httpx.Client, ns: str) -> None:
    first = client.put(f"/v1/ns/{ns}/keys/once", content=b"1", headers={"If-None-Match": "*"})
    assert first.status_code == 200
    second = client.put(f"/v1/ns/{ns}/keys/once", content=b"2", headers={"If-None-Match": "*"})
    assert second.status_code == 412
    assert client.get(f"/v1/ns/{ns}/keys/once").content == b"1"
    client.delete(f"/v1/ns/{ns}/keys/once")
    again = client.put(f"/v1/ns/{ns}/keys/once", content=b"3", headers={"If-None-Match": "*"})
    assert again.status_code == 200


def test_external_versions(client: httpx.Client, ns: str) -> None:
    r = put(client, ns, "row", b"v10", version="10")
    assert r.status_code == 200 and r.json()["version"] == 10
    older = put(client, ns, "row", b"v9", version="9")
    assert older.status_code == 409
    err = older.json()["error"]
    assert err["code"] == "stale_version" and err["current_version"] == 10
    assert put(client, ns, "row", b"v10b", version="10").status_code == 409
    assert put(client, ns, "row", b"v11", version="11").json()["version"] == 11
    assert client.get(f"/v1/ns/{ns}/keys/row").content == b"v11"


def test_ttl_expiry(client: httpx.Client, ns: str) -> None:
    assert put(client, ns, "short", ttl="0.3").status_code == 200
    deadline = time.monotonic() + 10
    while client.get(f"/v1/ns/{ns}/keys/short").status_code == 200:
        assert time.monotonic() < deadline, "entry did not expire"
        time.sleep(0.05)


def test_min_version_read_your_writes(client: httpx.Client, ns: str) -> None:
    v = put(client, ns, "ryw").json()["version"]
    assert client.get(f"/v1/ns/{ns}/keys/ryw", params={"min_version": str(v)}).status_code == 200
    assert client.get(f"/v1/ns/{ns}/keys/ryw", headers={"X-Min-Version": str(v)}).status_code == 200
    newer = client.get(f"/v1/ns/{ns}/keys/ryw", params={"min_version": str(v + 1)})
    assert newer.status_code == 404  # the home region holds nothing that new


def test_batch_get_in_request_order(client: httpx.Client, ns: str) -> None:
    put(client, ns, "a", b"A")
    client.put(f"/v1/ns/{ns}/keys/c", content=b"C", headers={"Content-Type": "text/plain"})
    r = client.post(f"/v1/ns/{ns}/keys:batchGet", json={"keys": ["c", "missing", "a", "c"]})
    assert r.status_code == 200
    items = r.json()["items"]
    assert [i["key"] for i in items] == ["c", "missing", "a", "c"]
    assert [i["found"] for i in items] == [True, False, True, True]
    assert base64.b64decode(items[0]["value_b64"]) == b"C"
    assert items[0]["content_type"] == "text/plain"
    assert items[1]["version"] is None
    assert client.post(f"/v1/ns/{ns}/keys:batchGet", json={"keys": []}).json() == {"items": []}


def test_batch_get_respects_invalidations(client: httpx.Client, ns: str) -> None:
    put(client, ns, "tagged", tags="t1")
    put(client, ns, "plain")
    client.post(f"/v1/ns/{ns}/tags/t1/invalidate")
    items = client.post(f"/v1/ns/{ns}/keys:batchGet", json={"keys": ["tagged", "plain"]}).json()
    assert [i["found"] for i in items["items"]] == [False, True]
