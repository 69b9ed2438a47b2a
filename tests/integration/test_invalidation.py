"""Namespace generations and tag versions: O(1) invalidation checked on read."""

from __future__ import annotations

import httpx


def test_namespace_invalidation(client: httpx.Client, ns: str) -> None:
    for i in range(20):
        assert client.put(f"/v1/ns/{ns}/keys/k{i}", content=b"x").status_code == 200
    other = f"{ns}-other"
    client.put(f"/v1/ns/{other}/keys/k0", content=b"y")
    r = client.post(f"/v1/ns/{ns}/invalidate")
    assert r.status_code == 202
    body = r.json()
    assert body["ns"] == ns and body["generation"] > 0
    assert all(client.get(f"/v1/ns/{ns}/keys/k{i}").status_code == 404 for i in range(20))
    assert client.get(f"/v1/ns/{other}/keys/k0").status_code == 200
    # written after the invalidation: served again
    client.put(f"/v1/ns/{ns}/keys/k0", content=b"new")
    assert client.get(f"/v1/ns/{ns}/keys/k0").content == b"new"
    second = client.post(f"/v1/ns/{ns}/invalidate").json()["generation"]
    assert second > body["generation"]


def test_tag_invalidation_hits_only_tagged_entries(client: httpx.Client, ns: str) -> None:
    client.put(f"/v1/ns/{ns}/keys/red", content=b"r", params={"tags": "red"})
    client.put(f"/v1/ns/{ns}/keys/both", content=b"b", params={"tags": "red,blue"})
    client.put(f"/v1/ns/{ns}/keys/blue", content=b"u", params={"tags": "blue"})
    client.put(f"/v1/ns/{ns}/keys/none", content=b"n")
    r = client.post(f"/v1/ns/{ns}/tags/red/invalidate")
    assert r.status_code == 202
    assert r.json()["ns"] == ns and r.json()["tag"] == "red" and r.json()["version"] > 0
    status = {
        k: client.get(f"/v1/ns/{ns}/keys/{k}").status_code for k in ("red", "both", "blue", "none")
    }
    assert status == {"red": 404, "both": 404, "blue": 200, "none": 200}
    client.put(f"/v1/ns/{ns}/keys/red", content=b"r2", params={"tags": "red"})
    assert client.get(f"/v1/ns/{ns}/keys/red").content == b"r2"


def test_tag_invalidation_of_unknown_tag_is_fine(client: httpx.Client, ns: str) -> None:
    assert client.post(f"/v1/ns/{ns}/tags/never-used/invalidate").status_code == 202


def test_invalidations_answer_202_for_empty_namespaces(client: httpx.Client, ns: str) -> None:
    assert client.post(f"/v1/ns/{ns}-empty/invalidate").status_code == 202
