"""``mrcache up``, ``status`` and ``down`` as a user runs them: real processes, no mocks.

Each test starts ``mrcache up`` as a subprocess on free ports with its own
state directory; the ``mrcache_up`` fixture stops whatever is still running
when a test ends, whether it passed or not.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from libs.common.processes import free_base_port
from tests.support.cluster import MRCACHE, Up, pid_exists, start_up, stop_up
from tests.support.platform import Broker, eventually

REGIONS = "us-east,eu-west"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MRCACHE, *args], capture_output=True, text=True, timeout=120, check=False
    )


def assert_all_gone(up: Up) -> None:
    assert up.pids, "the test never saw cluster.json"
    eventually(
        lambda: not any(pid_exists(pid) for pid in up.pids),
        timeout=10,
        what=f"every process of the platform ({sorted(up.pids)}) gone",
    )
    assert not up.cluster_path.exists()


@pytest.fixture
def mrcache_up(tmp_path: Path) -> Iterator[Callable[..., Up]]:
    """Start ``mrcache up`` with REGIONS on free ports; stop it and its children at teardown."""
    started: list[Up] = []

    def start(*args: str, state_dir: Path | None = None) -> Up:
        up = start_up(tmp_path, ["--regions", REGIONS, *args], state_dir=state_dir)
        started.append(up)
        return up

    yield start
    for up in started:
        stop_up(up)


def test_up_serves_every_region_until_down(mrcache_up: Callable[..., Up], tmp_path: Path) -> None:
    config = tmp_path / "platform.toml"
    config.write_text(
        '[platform]\nregions = ["us-east", "eu-west", "ap-south"]\n\n'
        '[namespaces.products]\nhome_region = "eu-west"\n'
    )
    up = mrcache_up("--config", str(config))
    cluster = up.cluster()

    # cluster.json: regions in --regions order on base-port + i, the broker, every process.
    us, eu = f"http://127.0.0.1:{up.base_port}", f"http://127.0.0.1:{up.base_port + 1}"
    assert list(cluster["regions"]) == ["us-east", "eu-west"]
    assert cluster["regions"]["us-east"]["url"] == us
    assert cluster["regions"]["eu-west"]["url"] == eu
    assert re.fullmatch(r"127\.0\.0\.1:\d+", cluster["kafka"])
    assert set(cluster["processes"]) == {
        "supervisor:local",
        "broker:local",
        "redis:us-east",
        "redis:eu-west",
        "invalidation_relay:us-east",
        "invalidation_relay:eu-west",
        "reconciler:local",
        "meter:local",
        "regional_cache:us-east",
        "regional_cache:eu-west",
    }
    assert cluster["processes"]["supervisor:local"] == up.popen.pid
    assert all(pid_exists(pid) for pid in up.pids)

    # Each region's Redis persists (AOF) under the state directory.
    for region, endpoints in cluster["regions"].items():
        assert re.fullmatch(r"redis://127\.0\.0\.1:\d+/0", endpoints["redis"])
        client = redis.Redis.from_url(endpoints["redis"])
        try:
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            assert client.config_get("dir")["dir"] == str(
                (up.state_dir / "redis" / region).resolve()
            )
        finally:
            client.close()

    printed = up.output()
    for text in (us, eu, cluster["kafka"], "curl"):
        assert text in printed

    with httpx.Client(timeout=10.0, trust_env=False) as http:
        put = http.put(
            f"{us}/v1/ns/default/keys/greeting",
            content=b"hello",
            headers={"Content-Type": "text/plain"},
        )
        assert put.status_code == 200, put.text
        assert put.json()["home_region"] == "us-east"
        got = http.get(f"{us}/v1/ns/default/keys/greeting")
        assert got.status_code == 200
        assert got.content == b"hello"
        assert got.headers["X-Cache-Region"] == "us-east"
        assert http.delete(f"{us}/v1/ns/default/keys/greeting").status_code == 204
        assert http.get(f"{us}/v1/ns/default/keys/greeting").status_code == 404

        # Every region knows exactly the regions started, and the config's namespaces.
        info = http.get(f"{eu}/v1/info").json()
        assert info["region"] == "eu-west"
        assert info["regions"] == {"us-east": us, "eu-west": eu}
        assert http.get(f"{eu}/v1/ns/products").json()["home_region"] == "eu-west"
        put = http.put(f"{eu}/v1/ns/products/keys/p1", content=b"x")
        assert put.status_code == 200, put.text

    status = cli("status", "--state-dir", str(up.state_dir))
    assert status.returncode == 0, status.stdout + status.stderr
    assert "us-east" in status.stdout and "eu-west" in status.stdout
    assert status.stdout.count(" ready") == 2

    # A second platform on the same state directory is refused and disturbs nothing.
    again = cli("up", "--base-port", str(free_base_port()), "--state-dir", str(up.state_dir))
    assert again.returncode == 1
    assert "already running" in again.stderr
    assert up.popen.poll() is None

    down = cli("down", "--state-dir", str(up.state_dir))
    assert down.returncode == 0, down.stdout + down.stderr
    for key in cluster["processes"]:
        assert f"stopped {key}" in down.stdout
    assert up.wait() == 0
    assert_all_gone(up)

    after = cli("status", "--state-dir", str(up.state_dir))
    assert after.returncode == 1
    assert "no platform is running" in after.stderr
    assert cli("down", "--state-dir", str(up.state_dir)).returncode == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_up_stops_everything(
    mrcache_up: Callable[..., Up], sig: signal.Signals
) -> None:
    up = mrcache_up()
    up.cluster()
    up.popen.send_signal(sig)
    assert up.wait() == 0, up.output()
    assert_all_gone(up)
    assert "Traceback" not in up.output()


def test_with_on_failure_stop_a_child_that_dies_stops_the_platform(
    mrcache_up: Callable[..., Up],
) -> None:
    up = mrcache_up("--on-failure", "stop")
    cluster = up.cluster()
    assert cluster["on_failure"] == "stop"
    os.kill(cluster["processes"]["regional_cache:eu-west"], signal.SIGKILL)
    assert up.wait() == 1
    assert_all_gone(up)
    assert "regional_cache:eu-west" in up.output()
    assert "exited unexpectedly" in up.output()


def test_crashed_processes_are_restarted_replicas_serve_and_an_external_kafka_is_used(
    mrcache_up: Callable[..., Up], tmp_path: Path, broker: Broker
) -> None:
    """`--replicas 2` runs two caches per region on one Redis, `--kafka` uses the given
    broker instead of starting one, and a process killed with SIGKILL comes back (with a
    new pid in cluster.json and a restart count in `status`) while the rest serve on."""
    config = tmp_path / "platform.toml"
    config.write_text("[faults]\ncontrol = true\n")
    up = mrcache_up("--replicas", "2", "--kafka", broker.bootstrap, "--config", str(config))
    cluster = up.cluster()
    assert cluster["kafka"] == broker.bootstrap
    assert "broker:local" not in cluster["processes"]
    assert {"regional_cache:us-east/2", "regional_cache:eu-west/2"} <= set(cluster["processes"])
    replicas = cluster["regions"]["us-east"]["replicas"]
    assert replicas[0] == cluster["regions"]["us-east"]["url"] and len(replicas) == 2
    relay_url = cluster["services"]["invalidation_relay:eu-west"]
    with httpx.Client(timeout=10.0, trust_env=False) as http:
        # a write through one replica is read through the other: they share the region
        assert http.put(f"{replicas[1]}/v1/ns/default/keys/r", content=b"one").status_code == 200
        assert http.get(f"{replicas[0]}/v1/ns/default/keys/r").content == b"one"
        # the drill can be changed while the relay runs ([faults] control)
        assert http.put(f"{relay_url}/v1/faults", json={"drop_rate": 0.5}).json() == {
            "drop_rate": 0.5
        }
        assert http.put(f"{relay_url}/v1/faults", json={"drop_rate": 2}).status_code == 400
        assert http.get(f"{relay_url}/v1/info").json()["drop_rate"] == 0.5

        old = cluster["processes"]["invalidation_relay:eu-west"]
        os.kill(old, signal.SIGKILL)

        def restarted() -> dict[str, Any] | None:
            state: dict[str, Any] = json.loads(up.cluster_path.read_text())
            return state if state["restarts"].get("invalidation_relay:eu-west") else None

        state = eventually(restarted, timeout=30, what="the killed relay restarted")
        assert state["processes"]["invalidation_relay:eu-west"] != old
        up.pids.update(state["processes"].values())

        def ready() -> bool:
            try:
                return http.get(f"{relay_url}/readyz").status_code == 200
            except httpx.HTTPError:
                return False

        eventually(ready, timeout=30, what="the restarted relay ready")
        assert up.popen.poll() is None
    assert "restarting it in" in up.output()
    status = cli("status", "--state-dir", str(up.state_dir))
    assert status.returncode == 0, status.stdout + status.stderr
    row = next(line for line in status.stdout.splitlines() if "invalidation_relay:eu-west" in line)
    assert row.split()[2:4] == ["running", "1"]
    assert relay_url in row


def test_a_killed_supervisor_takes_its_children_and_up_restarts_with_the_data(
    mrcache_up: Callable[..., Up], tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    first = mrcache_up(state_dir=state_dir)
    cluster = first.cluster()
    url = f"{cluster['regions']['us-east']['url']}/v1/ns/default/keys/kept"
    assert httpx.put(url, content=b"kept", trust_env=False, timeout=10.0).status_code == 200

    # SIGKILL: no cleanup in the supervisor; the parent-death signal stops its children.
    first.popen.kill()
    assert first.wait() == -signal.SIGKILL
    eventually(
        lambda: not any(pid_exists(pid) for pid in first.pids),
        timeout=20,
        what="every child of the killed supervisor gone",
    )
    status = cli("status", "--state-dir", str(state_dir))
    assert status.returncode == 1
    assert "gone" in status.stdout
    down = cli("down", "--state-dir", str(state_dir))
    assert down.returncode == 1
    assert "removed a stale cluster.json" in down.stderr
    assert not first.cluster_path.exists()

    # Redis keeps its append-only file in the state directory: the value survives a restart.
    second = mrcache_up(state_dir=state_dir)
    cluster = second.cluster()
    url = f"{cluster['regions']['us-east']['url']}/v1/ns/default/keys/kept"
    got = httpx.get(url, trust_env=False, timeout=10.0)
    assert got.status_code == 200
    assert got.content == b"kept"


def test_down_never_signals_a_process_that_reused_a_listed_pid(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        # A cluster.json from before a crash whose pid now belongs to another process.
        path = state_dir / "cluster.json"
        path.write_text(
            json.dumps(
                {
                    "regions": {"us-east": {"url": "http://127.0.0.1:9", "redis": "redis://x"}},
                    "kafka": "127.0.0.1:9",
                    "processes": {"supervisor:local": stranger.pid},
                }
            )
        )
        an_hour_ago = time.time() - 3600
        os.utime(path, (an_hour_ago, an_hour_ago))
        status = cli("status", "--state-dir", str(state_dir))
        assert status.returncode == 1
        assert "unreachable" in status.stdout and "gone" in status.stdout
        down = cli("down", "--state-dir", str(state_dir))
        assert down.returncode == 1
        assert "no platform is running" in down.stderr
        assert stranger.poll() is None
        assert not path.exists()
    finally:
        stranger.kill()
        stranger.wait()


@pytest.mark.parametrize(
    ("args", "config", "message"),
    [
        (["--regions", "US_East"], None, "invalid region name 'US_East'"),
        (["--regions", "us-east,us-east"], None, "lists a region twice"),
        (["--regions", "us-east,,eu-west"], None, "invalid region name ''"),
        (["--regions", ""], None, "invalid region name ''"),
        ([], "[platform\n", "is not valid TOML"),
        ([], '[platform]\nregions = ["us-east"]\nzones = 3\n', "platform.zones"),
        ([], '[platform]\nregions = ["Bad_Region"]\n', "invalid region name 'Bad_Region'"),
        (
            ["--regions", "us-east"],
            '[namespaces.products]\nhome_region = "eu-west"\n',
            "--regions us-east does not fit",
        ),
        (["--config", "/nonexistent/platform.toml"], None, "cannot read config file"),
    ],
)
def test_bad_regions_or_config_exit_2_and_start_nothing(
    tmp_path: Path, args: list[str], config: str | None, message: str
) -> None:
    if config is not None:
        path = tmp_path / "platform.toml"
        path.write_text(config)
        args = [*args, "--config", str(path)]
    state_dir = tmp_path / "state"
    result = cli("up", "--base-port", str(free_base_port(3)), "--state-dir", str(state_dir), *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not state_dir.exists()


def test_a_busy_region_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    base = free_base_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 1))
        taken.listen()
        state_dir = tmp_path / "state"
        result = cli(
            "up", "--regions", REGIONS, "--base-port", str(base), "--state-dir", str(state_dir)
        )
    assert result.returncode == 1
    assert f"port {base + 1} on 127.0.0.1 is in use" in result.stderr
    assert not (state_dir / "logs").exists()
    assert not (state_dir / "cluster.json").exists()
