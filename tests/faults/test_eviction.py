"""Eviction: a region's Redis past maxmemory keeps answering, evicting cold keys per policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.common.processes import free_port
from tests.support.platform import Broker, running_service, service_env, start_redis

VALUE = b"x" * 16 * 1024


@pytest.mark.parametrize("policy", ["lru", "lfu"])
def test_filling_past_maxmemory_evicts_cold_keys(
    tmp_path: Path, broker: Broker, policy: str
) -> None:
    server = start_redis(tmp_path)
    env = service_env(
        "us-east",
        free_port(),
        server.url,
        broker.bootstrap,
        MRCACHE_EVICTION__POLICY=policy,
        MRCACHE_EVICTION__MAXMEMORY="4mb",
    )
    try:
        with running_service(tmp_path, env) as svc, svc.client() as client:
            info = client.get("/v1/info").json()["eviction"]
            assert info["policy"] == policy
            assert info["redis_policy"] == f"volatile-{policy}"
            assert info["redis_maxmemory"] == 4 * 1024 * 1024

            assert client.put("/v1/ns/ev/keys/hot", content=b"hot").status_code == 200
            for _ in range(50):  # a frequent key: LFU must keep it
                assert client.get("/v1/ns/ev/keys/hot").status_code == 200
            written = 800  # about 13 MB of values into 4 MB
            for i in range(written):
                r = client.put(f"/v1/ns/ev/keys/cold-{i}", content=VALUE)
                assert r.status_code == 200, r.text
                if i % 10 == 0:
                    assert client.get("/v1/ns/ev/keys/nope").status_code == 404
                    if policy == "lfu":
                        assert client.get("/v1/ns/ev/keys/hot").status_code == 200

            found = [client.get(f"/v1/ns/ev/keys/cold-{i}").status_code for i in range(written)]
            assert set(found) <= {200, 404}
            assert found.count(404) > written // 2, "keys were evicted"
            half = written // 2
            # Redis's LRU clock ticks once a second, so "old" is only statistically first out
            assert found[:half].count(404) > found[half:].count(404), "older keys go first"
            assert found[-1] == 200, "the newest key is kept"
            if policy == "lfu":
                assert client.get("/v1/ns/ev/keys/hot").content == b"hot"
            assert client.get("/readyz").status_code == 200
    finally:
        assert server.proc is not None
        server.proc.stop()
