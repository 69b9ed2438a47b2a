"""The state directory of a local platform: ``cluster.json`` and the supervisor lock.

``cluster.json`` (api.md) tells ``mrcache down``, ``mrcache status`` and
tests where every region is and which processes run::

    {"regions": {"us-east": {"url": "http://127.0.0.1:8100", "redis": "redis://..."}},
     "kafka": "127.0.0.1:<port>",
     "processes": {"supervisor:local": <pid>, "broker:local": <pid>, "redis:us-east": <pid>, ...},
     "services": {"invalidation_relay:us-east": "http://127.0.0.1:<port>", ...},
     "restarts": {"invalidation_relay:us-east": 1}}

The supervisor writes it again after each restart of a crashed process (new pids).

It exists only while the platform is ready: ``up`` writes it once every region
answers ``/readyz`` and removes it after stopping everything.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.cli.errors import CliError

CLUSTER_FILE = "cluster.json"
LOCK_FILE = "supervisor.lock"
SUPERVISOR = "supervisor:local"


class RegionEndpoints(BaseModel):
    model_config = ConfigDict(extra="ignore")

    url: str
    redis: str
    # with `up --redis-cluster`: redis is the seed node, redis_nodes every node
    redis_cluster: bool = False
    redis_nodes: list[str] = Field(default_factory=list)
    # every regional_cache of the region (`up --replicas`), the first being `url`
    replicas: list[str] = Field(default_factory=list)


class ClusterState(BaseModel):
    """The content of ``cluster.json``; ``written_at`` comes from the file's mtime."""

    model_config = ConfigDict(extra="ignore")

    regions: dict[str, RegionEndpoints]
    kafka: str
    processes: dict[str, int]
    # the HTTP URL of every process that is not a region's cache (relays, reconciler, meter)
    services: dict[str, str] = Field(default_factory=dict)
    # how often the supervisor restarted each process since `up` began
    restarts: dict[str, int] = Field(default_factory=dict)
    on_failure: str = "restart"
    # the platform config file every service reads (homes, Debezium topics: the meter's)
    config: str | None = None
    written_at: float = Field(default=0.0, exclude=True)


def cluster_path(state_dir: Path) -> Path:
    return state_dir / CLUSTER_FILE


def write_state(state_dir: Path, state: ClusterState) -> None:
    """Write atomically, so a reader never sees half a file."""
    path = cluster_path(state_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(state.model_dump_json(indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_state(state_dir: Path) -> ClusterState:
    """The running platform's state; :class:`CliError` when there is none."""
    path = cluster_path(state_dir)
    try:
        raw = path.read_bytes()
        written_at = path.stat().st_mtime
    except FileNotFoundError:
        raise CliError(f"no platform is running in {state_dir} (no {CLUSTER_FILE})") from None
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    try:
        state = ClusterState.model_validate_json(raw)
    except ValidationError as exc:
        raise CliError(f"{path} is not a cluster file written by mrcache up: {exc}") from None
    return state.model_copy(update={"written_at": written_at})


def remove_state(state_dir: Path) -> None:
    cluster_path(state_dir).unlink(missing_ok=True)


@contextlib.contextmanager
def supervisor_lock(state_dir: Path) -> Iterator[None]:
    """Hold the state directory for one ``mrcache up`` at a time.

    Two supervisors on one directory would share Redis data directories. The
    kernel drops the lock however the holder dies, so it is never stale.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / LOCK_FILE).open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CliError(
                f"a platform is already running in {state_dir}; "
                f"stop it with `mrcache down --state-dir {state_dir}`"
            ) from None
        yield
