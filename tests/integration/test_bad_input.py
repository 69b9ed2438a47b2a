"""Every limit of api.md and malformed input answer a JSON 4xx, never a 500."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from tests.support.platform import Service


def error_code(r: httpx.Response) -> str:
    assert r.headers["content-type"].startswith("application/json"), r.text
    code: str = r.json()["error"]["code"]
    assert r.json()["error"]["message"]
    return code


@pytest.mark.parametrize("bad_ns", ["UPPER", "_x", "a" * 65, "sp%20ace", "%FF", "%C3%A9"])
def test_invalid_namespace(client: httpx.Client, bad_ns: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        r = client.request(method, f"/v1/ns/{bad_ns}/keys/k", content=b"x")
        assert r.status_code == 400 and error_code(r) == "invalid_namespace"
    r = client.post(f"/v1/ns/{bad_ns}/invalidate")
    assert r.status_code == 400 and error_code(r) == "invalid_namespace"


@pytest.mark.parametrize(
    "bad_key", ["%00", "a%0Ab", "%7F", "%FF%FE", "%ED%A0%80", "k" * 513, "%C2%85"]
)
def test_invalid_key(client: httpx.Client, ns: str, bad_key: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        r = client.request(method, f"/v1/ns/{ns}/keys/{bad_key}", content=b"x")
        assert r.status_code == 400 and error_code(r) == "invalid_key", (method, bad_key)


def test_key_of_exactly_512_bytes_is_fine(client: httpx.Client, ns: str) -> None:
    assert client.put(f"/v1/ns/{ns}/keys/{'k' * 512}", content=b"x").status_code == 200


@pytest.mark.parametrize("tags", ["Bad", "a,,b", ",".join(f"t{i}" for i in range(17)), "a b"])
def test_invalid_tags(client: httpx.Client, ns: str, tags: str) -> None:
    r = client.put(f"/v1/ns/{ns}/keys/k", content=b"x", params={"tags": tags})
    assert r.status_code == 400 and error_code(r) == "invalid_tag"
    assert client.get(f"/v1/ns/{ns}/keys/k").status_code == 404  # nothing was stored


def test_invalid_tag_in_invalidate_path(client: httpx.Client, ns: str) -> None:
    r = client.post(f"/v1/ns/{ns}/tags/NOPE/invalidate")
    assert r.status_code == 400 and error_code(r) == "invalid_tag"


def test_value_too_large(client: httpx.Client, ns: str) -> None:
    r = client.put(f"/v1/ns/{ns}/keys/big", content=b"x" * (1024 * 1024 + 1))
    assert r.status_code == 413 and error_code(r) == "value_too_large"
    assert client.put(f"/v1/ns/{ns}/keys/big", content=b"x" * (1024 * 1024)).status_code == 200


def test_value_too_large_chunked(client: httpx.Client, ns: str) -> None:
    def chunks() -> object:
        for _ in range(20):
            yield b"y" * 65536 * 2

    r = client.put(f"/v1/ns/{ns}/keys/chunked", content=chunks())  # type: ignore[arg-type]
    assert r.status_code == 413 and error_code(r) == "value_too_large"


def test_empty_value_is_allowed(client: httpx.Client, ns: str) -> None:
    assert client.put(f"/v1/ns/{ns}/keys/empty", content=b"").status_code == 200
    assert client.get(f"/v1/ns/{ns}/keys/empty").content == b""


@pytest.mark.parametrize("ttl", ["0", "-5", "abc", "nan", "inf", "2592001", "", "1e999"])
def test_invalid_ttl(client: httpx.Client, ns: str, ttl: str) -> None:
    r = client.put(f"/v1/ns/{ns}/keys/k", content=b"x", params={"ttl": ttl})
    assert r.status_code == 422 and error_code(r) == "invalid_ttl"


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("If-Match", "garbage"),
        ("If-Match", '"-1"'),
        ("If-None-Match", '"abc"'),
        ("If-Match", '"99999999999999999999"'),
    ],
)
def test_malformed_conditional_headers(
    client: httpx.Client, ns: str, header: str, value: str
) -> None:
    r = client.put(f"/v1/ns/{ns}/keys/k", content=b"x", headers={header: value})
    assert r.status_code == 400 and error_code(r) == "invalid_version"


@pytest.mark.parametrize("version", ["abc", "0", "-1", "1.5", str(2**53)])
def test_malformed_versions(client: httpx.Client, ns: str, version: str) -> None:
    r = client.put(f"/v1/ns/{ns}/keys/k", content=b"x", params={"version": version})
    assert r.status_code == 400 and error_code(r) == "invalid_version"
    g = client.get(f"/v1/ns/{ns}/keys/k", params={"min_version": version})
    assert g.status_code == 400 and error_code(g) == "invalid_version"
    h = client.get(f"/v1/ns/{ns}/keys/k", headers={"X-Min-Version": version})
    assert h.status_code == 400


def test_malformed_content_type(client: httpx.Client, ns: str) -> None:
    r = client.put(f"/v1/ns/{ns}/keys/k", content=b"x", headers={"Content-Type": "a" * 300})
    assert r.status_code == 400 and error_code(r) == "invalid_content_type"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"keys": "a"}',
        b'{"keys": [1, 2]}',
        b'{"nokeys": []}',
        b"",
        b'{"keys": [null]}',
        b"\xff\xfe",
    ],
)
def test_batch_get_bad_bodies(client: httpx.Client, ns: str, body: bytes) -> None:
    r = client.post(
        f"/v1/ns/{ns}/keys:batchGet", content=body, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and error_code(r) == "invalid_request", body


def test_batch_get_limits(client: httpx.Client, ns: str) -> None:
    r = client.post(f"/v1/ns/{ns}/keys:batchGet", json={"keys": ["k"] * 1001})
    assert r.status_code == 400 and error_code(r) == "invalid_request"
    r = client.post(f"/v1/ns/{ns}/keys:batchGet", json={"keys": ["ok", "bad\u0000"]})
    assert r.status_code == 400 and error_code(r) == "invalid_key"
    assert client.post(f"/v1/ns/{ns}/keys:batchGet", json={"keys": ["k"] * 1000}).status_code == 200


def test_unknown_routes_and_methods_are_json(client: httpx.Client, ns: str) -> None:
    r = client.get("/v1/nothing/here")
    assert r.status_code == 404 and error_code(r) == "not_found"
    r = client.patch(f"/v1/ns/{ns}/keys/k", content=b"x")
    assert r.status_code == 405 and error_code(r) == "method_not_allowed"
    r = client.get(f"/v1/ns/{ns}/keys/")
    assert r.status_code in (400, 404) and error_code(r) in ("invalid_key", "not_found")


def test_raw_http_garbage_does_not_hurt_the_service(
    service: Service, client: httpx.Client, ns: str
) -> None:
    for payload in [
        b"GARBAGE\r\n\r\n",
        b"GET /v1/info HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
    ]:
        with socket.create_connection(("127.0.0.1", service.port), timeout=5) as sock:
            sock.sendall(payload)
            reply = sock.recv(4096)
            assert not reply.startswith(b"HTTP/1.1 5")
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("version", "9" * 5000),
        ("min_version", "9" * 5000),
        ("X-Min-Version", "9" * 5000),
        ("If-Match", '"' + "9" * 5000 + '"'),
        ("If-None-Match", 'W/"' * 2000 + '1"'),
        ("If-Match", ",".join(['"1"'] * 500)),
    ],
)
def test_hostile_versions_answer_400(client: httpx.Client, ns: str, where: str, value: str) -> None:
    """Digits past Python's int limit and a weak prefix repeated 2,000 times were 500s."""
    if where in ("version", "min_version"):
        method = "PUT" if where == "version" else "GET"
        r = client.request(method, f"/v1/ns/{ns}/keys/k", content=b"x", params={where: value})
    else:
        method = "GET" if where == "X-Min-Version" else "PUT"
        r = client.request(method, f"/v1/ns/{ns}/keys/k", content=b"x", headers={where: value})
    assert r.status_code == 400, r.text
    assert error_code(r) in ("invalid_version", "invalid_request")


@pytest.mark.parametrize("chunked", [False, True])
def test_a_huge_json_body_is_refused_while_it_is_read(
    client: httpx.Client, ns: str, chunked: bool
) -> None:
    """batchGet read the whole body before any limit: 200 MB took a process from 98 MB to
    704 MB. Now a body past its limit gets 413 as soon as the limit is crossed."""
    size = 50 * 1024 * 1024
    chunk = b" " * (1024 * 1024)
    body: Any = (chunk for _ in range(size // len(chunk))) if chunked else b" " * size
    r = client.post(
        f"/v1/ns/{ns}/keys:batchGet",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413, r.text[:200]
    assert error_code(r) == "value_too_large"
    ok = client.post(f"/v1/ns/{ns}/keys:batchGet", json={"keys": ["k"]})
    assert ok.status_code == 200
