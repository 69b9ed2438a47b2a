"""A lossy region converges through the reconciler alone, while the others stay on the fast path.

eu-west's relay acknowledges every event without applying it
(``relay_drop_rate = 1.0``); the reconciler runs every second.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.support.cluster import running_platform
from tests.support.platform import eventually

CONFIG = """
[platform]
regions = ["us-east", "eu-west", "ap-south"]

[reconciler]
interval = 1

[faults]
relay_drop_rate = { "eu-west" = 1.0 }
"""
FAST = 10.0  # the event path
INTERVALS = 15.0  # a few reconcile intervals (plus process start-up noise)


class Lossy:
    def __init__(self, urls: dict[str, str]) -> None:
        self.http = {r: httpx.Client(base_url=u, timeout=10) for r, u in urls.items()}

    def etag(self, region: str, ns: str, key: str) -> int | None:
        r = self.http[region].get(f"/v1/ns/{ns}/keys/{key}")
        return int(r.headers["etag"].strip('"')) if r.status_code == 200 else None

    def status(self, region: str, ns: str, key: str) -> int:
        return self.http[region].get(f"/v1/ns/{ns}/keys/{key}").status_code


@pytest.fixture(scope="module")
def lossy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lossy, dict[str, int]]]:
    workdir = tmp_path_factory.mktemp("lossy")
    with running_platform(workdir, ("us-east", "eu-west", "ap-south"), config=CONFIG) as up:
        cluster = up.cluster()
        platform = Lossy({r: cluster["regions"][r]["url"] for r in cluster["regions"]})
        try:
            yield platform, cluster["processes"]
        finally:
            for client in platform.http.values():
                client.close()


def gone(p: Lossy, region: str, ns: str, key: str) -> Callable[[], bool]:
    return lambda: p.status(region, ns, key) == 404


def held_everywhere(p: Lossy, ns: str, key: str) -> None:
    for region in p.http:
        assert p.status(region, ns, key) == 200  # every region holds a copy now


def test_updates_reach_the_lossy_region_through_the_reconciler(
    lossy: tuple[Lossy, dict[str, int]],
) -> None:
    p, _ = lossy
    ns, key = f"u{uuid.uuid4().hex[:8]}", "k"
    p.http["us-east"].put(f"/v1/ns/{ns}/keys/{key}", content=b"v1")
    held_everywhere(p, ns, key)
    v2 = p.http["us-east"].put(f"/v1/ns/{ns}/keys/{key}", content=b"v2").json()["version"]
    eventually(lambda: p.etag("ap-south", ns, key) == v2, timeout=FAST, what="ap-south fast")
    eventually(lambda: p.etag("eu-west", ns, key) == v2, timeout=INTERVALS, what="eu-west repaired")


def test_deletes_and_invalidations_reach_the_lossy_region(
    lossy: tuple[Lossy, dict[str, int]],
) -> None:
    p, _ = lossy
    ns = f"d{uuid.uuid4().hex[:8]}"
    us = p.http["us-east"]
    us.put(f"/v1/ns/{ns}/keys/del", content=b"x")
    us.put(f"/v1/ns/{ns}/keys/tagged", content=b"t", params={"tags": "sale"})
    for key in ("del", "tagged"):
        held_everywhere(p, ns, key)
    assert us.delete(f"/v1/ns/{ns}/keys/del").status_code == 204
    assert us.post(f"/v1/ns/{ns}/tags/sale/invalidate").status_code == 202
    for key in ("del", "tagged"):
        eventually(gone(p, "ap-south", ns, key), timeout=FAST, what=f"ap-south {key}")
        eventually(gone(p, "eu-west", ns, key), timeout=INTERVALS, what=f"eu-west {key} repaired")

    ns2 = f"n{uuid.uuid4().hex[:8]}"
    us.put(f"/v1/ns/{ns2}/keys/a", content=b"a")
    held_everywhere(p, ns2, "a")
    assert us.post(f"/v1/ns/{ns2}/invalidate").status_code == 202
    eventually(lambda: p.status("ap-south", ns2, "a") == 404, timeout=FAST, what="ap-south ns")
    eventually(
        lambda: p.status("eu-west", ns2, "a") == 404,
        timeout=INTERVALS,
        what="eu-west namespace repaired",
    )
