"""``mrcache warm``: an empty region gets another region's hottest keys, paced."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cluster import MRCACHE, Up, running_platform
from tests.support.platform import eventually

ENV = {
    # every read counted, the ranking flushed to Redis every 0.3 s
    "MRCACHE_HOT_KEY_SAMPLE_EVERY": "1",
    "MRCACHE_HOT_RANKING_INTERVAL": "0.3",
}
NS = "catalog"


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    workdir = tmp_path_factory.mktemp("warm")
    with running_platform(workdir, ("us-east", "eu-west"), env=ENV) as platform:
        yield platform


def warm(up: Up, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MRCACHE, "warm", "--state-dir", str(up.state_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_hottest_keys_are_copied_and_served_as_hits(up: Up) -> None:
    regions: dict[str, Any] = up.cluster()["regions"]
    us = httpx.Client(base_url=regions["us-east"]["url"], timeout=10)
    eu = httpx.Client(base_url=regions["eu-west"]["url"], timeout=10)
    try:
        for i in range(40):
            assert us.put(f"/v1/ns/{NS}/keys/p{i}", content=f"v{i}".encode()).status_code == 200
        # p0..p9 are read, p0 most; p10..p39 never
        for i in range(10):
            for _ in range(30 - 2 * i):
                assert us.get(f"/v1/ns/{NS}/keys/p{i}").status_code == 200

        def ranked() -> list[str] | None:
            found = us.get("/internal/v1/hot", params={"top": 10}).json()["keys"]
            names = [item["key"] for item in found if item["ns"] == NS]
            return names if len(names) == 10 else None

        names = eventually(ranked, timeout=15, what="us-east ranks its hot keys")
        assert set(names) == {f"p{i}" for i in range(10)} and names[0] == "p0"

        done = warm(up, "--from", "us-east", "--to", "eu-west", "--top", "10", "--rate", "50")
        assert done.returncode == 0, done.stderr
        assert "warmed eu-west from us-east: 10 hottest keys, 10 installed" in done.stdout
        assert "10/10 keys" in done.stderr  # the progress bar's last line
        for i in range(10):
            r = eu.get(f"/v1/ns/{NS}/keys/p{i}")
            assert (r.status_code, r.headers["x-cache"], r.content) == (
                200,
                "HIT",
                f"v{i}".encode(),
            )
        cold = eu.get(f"/v1/ns/{NS}/keys/p30")
        assert cold.status_code == 200 and cold.headers["x-cache"] == "MISS"

        # a second warm-up changes nothing: the copies are already as new
        again = warm(up, "--from", "us-east", "--to", "eu-west", "--top", "10", "--ns", NS)
        assert again.returncode == 0 and "0 installed" in again.stdout
        other = warm(up, "--from", "us-east", "--to", "eu-west", "--ns", "nothing-here")
        assert other.returncode == 0 and "0 hottest keys" in other.stdout
    finally:
        us.close()
        eu.close()


def test_a_key_the_source_does_not_hold_is_skipped(up: Up) -> None:
    """(A copy older than what the target knows is refused by the versioned fill script,
    as for remote fills: tests/integration/test_store.py.)"""
    regions: dict[str, Any] = up.cluster()["regions"]
    with httpx.Client(base_url=regions["eu-west"]["url"], timeout=10) as eu:
        r = eu.post(
            "/internal/v1/warm", json={"source": "us-east", "ns": NS, "keys": ["never-written"]}
        )
        assert r.status_code == 200 and r.json()["installed"] == 0


def test_bad_arguments_are_reported(up: Up, tmp_path: Path) -> None:
    unknown = warm(up, "--from", "mars", "--to", "eu-west")
    assert unknown.returncode == 1 and "no region 'mars'" in unknown.stderr
    same = warm(up, "--from", "eu-west", "--to", "eu-west")
    assert same.returncode == 1 and "different regions" in same.stderr
    assert warm(up, "--from", "us-east", "--to", "eu-west", "--batch", "0").returncode == 2
    assert warm(up, "--from", "us-east", "--to", "eu-west", "--rate", "-1").returncode == 2
    nothing = subprocess.run(
        [*MRCACHE, "warm", "--from", "a", "--to", "b", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert nothing.returncode == 1 and "no platform is running" in nothing.stderr
    regions: dict[str, Any] = up.cluster()["regions"]
    with httpx.Client(base_url=regions["eu-west"]["url"], timeout=10) as eu:
        for body in (
            {"source": "eu-west", "ns": NS, "keys": ["k"]},
            {"source": "us-east", "ns": "Bad NS", "keys": ["k"]},
            {"source": "us-east", "ns": NS, "keys": ["k"] * 501},
            {"source": "us-east", "ns": NS},
        ):
            r = eu.post("/internal/v1/warm", json=body)
            assert 400 <= r.status_code < 500 and "error" in r.json(), (body, r.text)
