"""A whole local platform for end-to-end tests: ``mrcache up`` as a user runs it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from libs.common.processes import free_base_port

MRCACHE = [sys.executable, "-m", "services.cli.main"]
STARTUP_TIMEOUT = 90.0


@dataclass
class Up:
    """A running ``mrcache up`` and what it was given."""

    popen: subprocess.Popen[bytes]
    state_dir: Path
    base_port: int
    output_path: Path
    pids: set[int] = field(default_factory=set)

    @property
    def cluster_path(self) -> Path:
        return self.state_dir / "cluster.json"

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def cluster(self) -> dict[str, Any]:
        """Wait for cluster.json, failing early (with the output) if ``up`` exits."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.cluster_path.exists():
                cluster: dict[str, Any] = json.loads(self.cluster_path.read_text())
                self.pids.update(cluster["processes"].values())
                return cluster
            if self.popen.poll() is not None:
                pytest.fail(f"mrcache up exited with {self.popen.returncode}:\n{self.output()}")
            time.sleep(0.05)
        pytest.fail(f"no cluster.json after {STARTUP_TIMEOUT} s:\n{self.output()}")

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"mrcache up still running after {timeout} s:\n{self.output()}")


def pid_exists(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (an orphan init has not reaped yet) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@contextlib.contextmanager
def running_platform(
    workdir: Path,
    regions: Sequence[str],
    *,
    config: str | None = None,
    env: dict[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> Iterator[Up]:
    """``mrcache up`` with ``regions`` (and a config text) until the block ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    args = ["--regions", ",".join(regions), *extra_args]
    if config is not None:
        path = workdir / "mrcache.toml"
        path.write_text(config)
        args += ["--config", str(path)]
    up = start_up(workdir, args, count=len(regions), env=env)
    try:
        up.cluster()
        yield up
    finally:
        stop_up(up)


def start_up(
    workdir: Path,
    args: Sequence[str],
    *,
    count: int = 2,
    env: dict[str, str] | None = None,
    state_dir: Path | None = None,
) -> Up:
    base_port = free_base_port(count)
    state_dir = state_dir or workdir / f"state-{base_port}"
    output_path = workdir / f"up-{base_port}.log"
    with output_path.open("wb") as output:
        popen = subprocess.Popen(
            [*MRCACHE, "up", "--base-port", str(base_port), "--state-dir", str(state_dir), *args],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
    return Up(popen, state_dir, base_port, output_path)


def stop_up(up: Up) -> None:
    """SIGTERM ``up`` and make sure none of its processes survives."""
    if up.popen.poll() is None:
        up.popen.terminate()
        try:
            up.popen.wait(60)
        except subprocess.TimeoutExpired:
            up.popen.kill()  # its children get SIGTERM from their parent-death signal
            up.popen.wait(10)
    for pid in up.pids - {up.popen.pid}:
        if pid_exists(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
