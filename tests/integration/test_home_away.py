"""A region whose home region cannot be reached: it never makes up a version for what the
origin answers. Its answer is served, not cached; where this region knows a newer version
exists, or the read asks for one, it says the home is unavailable."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis

from libs.common import keys
from libs.common.processes import free_port
from tests.support.origin_server import OriginServer
from tests.support.platform import Broker, RedisServer, Service, running_service, service_env

CONFIG = """
[platform]
regions = ["us-east", "eu-west"]

[namespaces.cat]
home_region = "us-east"
origin = "{origin}"

[namespaces.plain]
home_region = "us-east"
"""


@pytest.fixture(scope="module")
def eu_west(
    tmp_path_factory: pytest.TempPathFactory,
    origin: OriginServer,
    redis_server: RedisServer,
    broker: Broker,
) -> Iterator[Service]:
    workdir = tmp_path_factory.mktemp("home-away")
    config = workdir / "mrcache.toml"
    config.write_text(CONFIG.format(origin=origin.url("/items/{key}")))
    nobody = free_port()  # us-east: nothing listens there
    env = service_env(
        "eu-west",
        free_port(),
        redis_server.url.rsplit("/", 1)[0] + "/3",
        broker.bootstrap,
        MRCACHE_CONFIG=str(config),
        MRCACHE_REGION_URLS=json.dumps({"us-east": f"http://127.0.0.1:{nobody}"}),
        MRCACHE_FORWARD_TIMEOUT="1.0",
    )
    with running_service(workdir, env) as svc:
        yield svc


def test_the_origins_answer_is_served_uncached_without_a_version(
    eu_west: Service, redis_server: RedisServer
) -> None:
    with eu_west.client() as client:
        got = client.get("/v1/ns/cat/keys/row")
        assert got.status_code == 200 and got.content == b"value-of-row-v1"
        assert got.headers["x-cache"] == "MISS"
        assert "etag" not in got.headers  # only the home gives versions
        held = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/3")
        try:
            assert held.exists(keys.entry("cat", "row")) == 0
            # where a newer version is known to exist, the origin's answer proves nothing
            held.hset(keys.entry("cat", "known"), mapping={"ver": "5", "tomb": "m", "ts": "1"})
            away = client.get("/v1/ns/cat/keys/known")
            assert away.status_code == 503
            assert away.json()["error"]["code"] == "home_unavailable"
        finally:
            held.close()
        # a read of one's own writes cannot be answered without the home
        mine = client.get("/v1/ns/cat/keys/row", params={"min_version": "5"})
        assert mine.status_code == 503
        # without an origin there is nothing to serve
        plain = client.get("/v1/ns/plain/keys/row")
        assert plain.status_code == 503 and plain.json()["error"]["code"] == "home_unavailable"
