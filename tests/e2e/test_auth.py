"""API keys: every scope x route x namespace pattern, direct and forwarded between regions."""

from __future__ import annotations

import fnmatch
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from libs.common.auth import sha256_hex
from libs.common.processes import free_port
from tests.support.cluster import running_platform
from tests.support.fuzz import assert_schemathesis_clean
from tests.support.platform import Broker, RedisServer, service_env, start_service

KEYS = {
    "reader": ("r-secret-1", ["read"], ["catalog", "catalog.*"]),
    "writer": ("w-secret-2", ["read", "write"], ["*"]),
    "invalidator": ("i-secret-3", ["invalidate"], ["catalog"]),
    "admin": ("a-secret-4", ["admin"], ["*"]),
}
CONFIG = (
    '[platform]\nregions = ["us-east", "eu-west"]\n'
    '\n[namespaces.secretive]\norigin = "http://origin.internal:9000/items/{key}?token=s3cr3t"\n'
) + "".join(
    f'\n[[auth.keys]]\nname = "{name}"\nsecret_sha256 = "{sha256_hex(secret)}"\n'
    f"scopes = {scopes}\nnamespaces = {patterns}\n"
    for name, (secret, scopes, patterns) in KEYS.items()
).replace("'", '"')
NAMESPACES = ("catalog", "catalog.eu", "other")
# route name -> (method, path template, needed scope or None for "any valid key")
ROUTES = {
    "get": ("GET", "/v1/ns/{ns}/keys/k", "read"),
    "batch": ("POST", "/v1/ns/{ns}/keys:batchGet", "read"),
    "config": ("GET", "/v1/ns/{ns}", "read"),
    "put": ("PUT", "/v1/ns/{ns}/keys/k", "write"),
    "delete": ("DELETE", "/v1/ns/{ns}/keys/k", "write"),
    "invalidate": ("POST", "/v1/ns/{ns}/invalidate", "invalidate"),
    "tag": ("POST", "/v1/ns/{ns}/tags/t/invalidate", "invalidate"),
    "list": ("GET", "/v1/ns", "admin"),
    "info": ("GET", "/v1/info", None),
}


def allowed(key: str, scope: str | None, ns: str) -> bool:
    _, scopes, patterns = KEYS[key]
    if "admin" in scopes or scope is None:
        return True
    if scope not in scopes or scope == "admin":
        return False
    return any(fnmatch.fnmatchcase(ns, p) for p in patterns)


@pytest.fixture(scope="module")
def regions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    workdir = tmp_path_factory.mktemp("auth")
    with running_platform(
        workdir,
        ("us-east", "eu-west"),
        config=CONFIG,
        env={"MRCACHE_INTERNAL_TOKEN": "internal-hop-secret"},
    ) as up:
        yield {r: v["url"] for r, v in up.cluster()["regions"].items()}


@pytest.mark.parametrize("region", ["us-east", "eu-west"])  # eu-west forwards writes
def test_the_auth_matrix(regions: dict[str, str], region: str) -> None:
    failures = []
    with httpx.Client(base_url=regions[region], timeout=10) as client:
        for route, (method, template, scope) in ROUTES.items():
            for ns in NAMESPACES:
                path = template.format(ns=ns)
                body = b'{"keys": ["k"]}' if route == "batch" else b"v"
                for who in (None, "bogus", *KEYS):
                    headers = {"Content-Type": "application/json"} if route == "batch" else {}
                    if who == "bogus":
                        headers["Authorization"] = "Bearer not-a-key"
                    elif who is not None:
                        headers["Authorization"] = f"Bearer {KEYS[who][0]}"
                    r = client.request(method, path, content=body, headers=headers)
                    if who is None or who == "bogus":
                        expected = {401}
                    elif allowed(who, scope, ns):
                        expected = {200, 202, 204, 404}
                    else:
                        expected = {403}
                    if r.status_code not in expected:
                        failures.append((route, ns, who, r.status_code, r.text[:80]))
                    elif r.status_code in (401, 403):
                        assert r.json()["error"]["code"] in ("unauthorized", "forbidden")
    assert not failures, failures


def test_forwarded_writes_keep_the_callers_identity(regions: dict[str, str]) -> None:
    reader = {"Authorization": f"Bearer {KEYS['reader'][0]}"}
    writer = {"Authorization": f"Bearer {KEYS['writer'][0]}"}
    eu = regions["eu-west"]
    ok = httpx.put(f"{eu}/v1/ns/catalog/keys/fw", content=b"x", headers=writer)
    assert ok.status_code == 200 and ok.headers["x-cache-forwarded"] == "eu-west"
    assert httpx.put(f"{eu}/v1/ns/catalog/keys/fw", content=b"x", headers=reader).status_code == 403
    got = httpx.get(f"{eu}/v1/ns/catalog/keys/fw", headers=reader)  # a remote fill
    assert got.status_code == 200 and got.content == b"x"


def test_a_clients_hop_header_is_not_honoured(regions: dict[str, str]) -> None:
    """X-Mrcache-Hop from a client (no internal token) turned its own write into a 503;
    only a request with the internal token speaks for another region."""
    writer = {"Authorization": f"Bearer {KEYS['writer'][0]}", "X-Mrcache-Hop": "us-east"}
    eu = regions["eu-west"]
    ok = httpx.put(f"{eu}/v1/ns/catalog/keys/hop", content=b"x", headers=writer)
    assert ok.status_code == 200 and ok.headers["x-cache-forwarded"] == "eu-west", ok.text
    region = {**writer, "X-Mrcache-Internal": "internal-hop-secret"}
    looped = httpx.put(f"{eu}/v1/ns/catalog/keys/hop", content=b"x", headers=region)
    assert looped.status_code == 503 and looped.json()["error"]["code"] == "home_unavailable"


def test_internals_are_shown_to_admin_keys_only(regions: dict[str, str]) -> None:
    """A read key saw origin URLs (with their credentials) in GET /v1/ns/{ns}, and any key
    saw Redis memory and the event settings in /v1/info."""
    us = regions["us-east"]
    writer = {"Authorization": f"Bearer {KEYS['writer'][0]}"}
    admin = {"Authorization": f"Bearer {KEYS['admin'][0]}"}
    seen = httpx.get(f"{us}/v1/ns/secretive", headers=writer).json()
    assert "s3cr3t" not in str(seen) and seen["origin"].startswith("(set")
    assert "s3cr3t" in httpx.get(f"{us}/v1/ns/secretive", headers=admin).json()["origin"]
    info = httpx.get(f"{us}/v1/info", headers=writer).json()
    assert set(info) == {"region", "regions", "version", "limits"}  # what a client needs
    full = httpx.get(f"{us}/v1/info", headers=admin).json()
    assert "used_memory" in full["eviction"] and "topic" in full["events"]


def test_open_routes_and_the_internal_hop(regions: dict[str, str]) -> None:
    us = regions["us-east"]
    assert httpx.get(f"{us}/healthz").status_code == 200
    assert httpx.get(f"{us}/readyz").status_code == 200
    assert httpx.get(f"{us}/metrics").status_code == 200  # loopback
    internal = f"{us}/internal/v1/ns/catalog/entries/fw"
    assert httpx.get(internal).status_code == 401
    assert httpx.get(internal, headers={"X-Mrcache-Internal": "wrong"}).status_code == 401
    assert httpx.get(
        internal, headers={"X-Mrcache-Internal": "internal-hop-secret"}
    ).status_code in (200, 404)
    secret = KEYS["admin"][0]
    r = httpx.get(f"{us}/v1/ns/catalog/keys/none", headers={"Authorization": f"Bearer {secret}"})
    assert secret not in r.text


def test_no_keys_binds_loopback_only(
    tmp_path: Path, redis_server: RedisServer, broker: Broker
) -> None:
    port = free_port()
    env = service_env("us-east", port, redis_server.url, broker.bootstrap, MRCACHE_HOST="0.0.0.0")
    svc = start_service(tmp_path, env)
    try:
        listening = subprocess.run(
            ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=False
        ).stdout
        local = listening.split()[3]  # State Recv-Q Send-Q Local Peer
        assert local == f"127.0.0.1:{port}", listening
        assert "no API keys configured" in svc.proc.log_tail(200)
    finally:
        svc.proc.stop()


def test_keys_without_an_internal_token_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "auth.toml"
    config.write_text(CONFIG)
    proc = subprocess.run(
        [sys.executable, "-m", "services.regional_cache"],
        env={"MRCACHE_CONFIG": str(config), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 2
    assert "MRCACHE_INTERNAL_TOKEN" in proc.stderr


@pytest.mark.parametrize("region", ["us-east", "eu-west"])
def test_schemathesis_with_auth_on_every_region(
    regions: dict[str, str], region: str, tmp_path: Path
) -> None:
    admin = {"Authorization": f"Bearer {KEYS['admin'][0]}"}
    assert_schemathesis_clean(regions[region], tmp_path, headers=admin)
