"""Process lifecycle: clean shutdown on SIGTERM, clear errors for bad settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from libs.common.processes import free_port
from tests.support.platform import Broker, RedisServer, service_env, start_service


def test_sigterm_stops_the_service_cleanly(
    tmp_path: Path, redis_server: RedisServer, broker: Broker
) -> None:
    env = service_env("eu-west", free_port(), redis_server.url, broker.bootstrap)
    svc = start_service(tmp_path, env)
    try:
        with svc.client() as client:
            assert client.put("/v1/ns/life/keys/k", content=b"x").status_code == 503  # not home
        # uvicorn shuts down gracefully, then re-raises the signal for the exit status
        assert svc.proc.stop(grace=15, sig=signal.SIGTERM) in (0, -signal.SIGTERM)
        log = svc.proc.log_tail(200)
        assert "Traceback" not in log
        assert "Application shutdown complete" in log
    finally:
        svc.proc.stop()


def run_service(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.regional_cache"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_bad_settings_exit_2_with_a_message(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MRCACHE_")}
    cases = {
        "MRCACHE_REGION": ("Not_A_Region", "invalid region"),
        "MRCACHE_PORT": ("99999", "port"),
        "MRCACHE_REDIS__URL": ("http://nope", "redis url"),
        "MRCACHE_MAX_TTL": ("-1", "max_ttl"),
    }
    for var, (value, needle) in cases.items():
        proc = run_service({**base, var: value})
        assert proc.returncode == 2, (var, proc.stderr)
        assert needle in proc.stderr, (var, proc.stderr)
        assert "Traceback" not in proc.stderr

    config = tmp_path / "bad.toml"
    config.write_text("[namespaces.x]\nhome_region = 'mars'\n")
    proc = run_service({**base, "MRCACHE_CONFIG": str(config)})
    assert proc.returncode == 2
    assert "home_region" in proc.stderr and "Traceback" not in proc.stderr

    config.write_text("[platform]\nregions = ['eu-west']\n")
    proc = run_service({**base, "MRCACHE_CONFIG": str(config), "MRCACHE_REGION": "us-east"})
    assert proc.returncode == 2
    assert "not in platform.regions" in proc.stderr


def test_a_bad_redis_url_is_reported_without_its_password() -> None:
    """The settings error echoed the whole URL, password included, into the log."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MRCACHE_")}
    for url in ("http://:hunter2@redis:6379/0", "redis://admin:hunter2@redis:notaport/0"):
        proc = run_service({**base, "MRCACHE_REDIS__URL": url})
        assert proc.returncode == 2, proc.stderr
        assert "hunter2" not in proc.stderr and "invalid settings" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
