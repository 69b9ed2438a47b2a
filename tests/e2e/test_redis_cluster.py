"""Three regions, each on its own Redis Cluster (``mrcache up --redis-cluster``).

ap-south is kept fresh by its relay, eu-west (whose relay drops every event) by
the reconciler alone, whose scans and digest reads run on every primary of
every region's cluster.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from redis.crc import key_slot

from libs.common import keys
from tests.support.cluster import running_platform
from tests.support.platform import eventually
from tests.support.redis_cluster import RedisClusterNodes

REGIONS = ("us-east", "eu-west", "ap-south")
CONFIG = """
[platform]
regions = ["us-east", "eu-west", "ap-south"]

[reconciler]
interval = 1

[faults]
relay_drop_rate = { "eu-west" = 1.0 }
"""
FAST = 10.0
INTERVALS = 20.0


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("clusters")
    with running_platform(workdir, REGIONS, config=CONFIG, extra_args=["--redis-cluster"]) as up:
        yield up.cluster()


def etag(client: httpx.Client, ns: str, key: str) -> int | None:
    r = client.get(f"/v1/ns/{ns}/keys/{key}")
    return int(r.headers["etag"].strip('"')) if r.status_code == 200 else None


def nodes_of(region: dict[str, Any]) -> RedisClusterNodes:
    return RedisClusterNodes([int(n.rsplit(":", 1)[1]) for n in region["redis_nodes"]], [])


def test_every_region_runs_on_a_cluster_and_stays_fresh(platform: dict[str, Any]) -> None:
    regions = platform["regions"]
    for region in REGIONS:
        assert regions[region]["redis_cluster"] is True
        nodes = nodes_of(regions[region]).nodes()
        assert len(nodes) == 6 and sum(n.primary for n in nodes) == 3
    http = {r: httpx.Client(base_url=regions[r]["url"], timeout=10) for r in REGIONS}
    ns = f"c{uuid.uuid4().hex[:8]}"
    names = [f"k{i}" for i in range(40)]

    def caught_up(region: str, versions: dict[str, int], deleted: str) -> Callable[[], bool]:
        return lambda: (
            all(etag(http[region], ns, k) == v for k, v in versions.items())
            and http[region].get(f"/v1/ns/{ns}/keys/{deleted}").status_code == 404
        )

    def invalidated(region: str) -> Callable[[], bool]:
        return lambda: http[region].get(f"/v1/ns/{ns}/keys/{names[30]}").status_code == 404

    try:
        for name in names:
            assert http["us-east"].put(f"/v1/ns/{ns}/keys/{name}", content=b"v1").status_code == 200
        for region in REGIONS:
            for name in names:
                assert http[region].get(f"/v1/ns/{ns}/keys/{name}").status_code == 200
        updated = {
            name: http["us-east"].put(f"/v1/ns/{ns}/keys/{name}", content=b"v2").json()["version"]
            for name in names[:20]
        }
        assert http["us-east"].delete(f"/v1/ns/{ns}/keys/{names[20]}").status_code == 204
        for region, timeout in (("ap-south", FAST), ("eu-west", INTERVALS)):
            eventually(
                caught_up(region, updated, names[20]), timeout=timeout, what=f"{region} caught up"
            )
        assert http["us-east"].post(f"/v1/ns/{ns}/invalidate").status_code == 202
        for region, timeout in (("ap-south", FAST), ("eu-west", INTERVALS)):
            eventually(invalidated(region), timeout=timeout, what=f"{region} invalidated")
    finally:
        for client in http.values():
            client.close()
    # what the reconciler repaired lives on every primary of eu-west's cluster
    primaries = nodes_of(regions["eu-west"]).primaries()
    slots = {key_slot(keys.entry(ns, name)) for name in names}
    assert {n.port for n in primaries if any(n.serves(s) for s in slots)} == {
        n.port for n in primaries
    }
