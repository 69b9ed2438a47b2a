"""The platform under test: ``mrcache up`` with the checker's broker, origin and network.

The checker runs the broker itself, behind a delay proxy (every Kafka client of
the platform, and the system of record, reach it through the proxy: the "slow
broker" fault), so it can also pause the broker's process. Each region is reached
by the other regions through a delay proxy too (``[regions.<name>] url``: the
"slow home" fault), while clients talk to every cache directly. ``mrcache up``
runs two caches per region and restarts whatever the faults kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from libs.common.config import NamespaceConfig
from libs.common.processes import ManagedProcess, broker_process, free_base_port, free_port
from libs.common.settings import KafkaSettings
from services.cli.delayproxy import DelayProxy, Route
from tests.consistency.database import Database, OriginServer
from tests.consistency.workload import NAMESPACES, Namespace
from tests.support.cluster import Up, start_up, stop_up

REGIONS = ("us-east", "eu-west", "ap-south")
HOST = "127.0.0.1"


def record_versions_supported() -> bool:
    """Whether this platform lets a namespace declare that its versions come from a
    system of record (the checker also runs against code from before that setting)."""
    return "versions" in NamespaceConfig.model_fields


def config_text(
    namespaces: tuple[Namespace, ...],
    origin: OriginServer,
    region_proxies: dict[str, int],
    interval: float,
) -> str:
    lines = ["[platform]", f"regions = {json.dumps(list(REGIONS))}", ""]
    for region, port in region_proxies.items():
        lines += [f"[regions.{region}]", f'url = "http://{HOST}:{port}"', ""]
    for space in namespaces:
        table = dict(space.config)
        if space.origin:
            table["origin"] = origin.template(space.name)
        if space.record_versions and record_versions_supported():
            table["versions"] = "source"
        lines.append(f"[namespaces.{space.name}]")
        lines += [f"{name} = {json.dumps(value)}" for name, value in table.items()]
        lines.append("")
    lines += ["[reconciler]", f"interval = {interval}", "", "[faults]", "control = true", ""]
    return "\n".join(lines)


@dataclass
class Platform:
    """Everything the checker started; ``stop()`` ends it all."""

    workdir: Path
    broker: ManagedProcess
    broker_proxy: DelayProxy
    region_proxies: dict[str, DelayProxy]
    origin: OriginServer
    up: Up
    bootstrap: str
    # the broker itself, not through the proxy (reading the topic after the run)
    broker_url: str
    replicas: dict[str, list[str]] = field(default_factory=dict)
    services: dict[str, str] = field(default_factory=dict)
    redis: dict[str, str] = field(default_factory=dict)

    def cluster(self) -> dict[str, Any]:
        """cluster.json as it is now (pids change when the supervisor restarts a process)."""
        data: dict[str, Any] = json.loads(self.up.cluster_path.read_text())
        return data

    def pid(self, key: str) -> int:
        pid: int = self.cluster()["processes"][key]
        self.up.pids.add(pid)
        return pid

    @property
    def kafka(self) -> KafkaSettings:
        return KafkaSettings(bootstrap=self.bootstrap, publish_timeout=2.0)

    async def stop(self) -> None:
        await asyncio.to_thread(stop_up, self.up)
        self.broker.stop()
        await self.broker_proxy.close()
        for proxy in self.region_proxies.values():
            await proxy.close()
        await self.origin.stop()


async def start_platform(
    workdir: Path, database: Database, *, interval: float, replicas: int = 2
) -> Platform:
    workdir.mkdir(parents=True, exist_ok=True)
    database.versioned = {s.name for s in NAMESPACES if s.record_versions}
    origin = OriginServer(database, free_port())
    await origin.start()
    broker_port, proxy_port = free_port(), free_port()
    broker = broker_process(broker_port, workdir, advertised_port=proxy_port).start()
    broker_proxy = DelayProxy([Route(HOST, proxy_port, HOST, broker_port)], 0.0)
    await broker_proxy.start()
    base = free_base_port(len(REGIONS))
    proxies = {region: free_port() for region in REGIONS}
    region_proxies = {
        region: DelayProxy([Route(HOST, proxies[region], HOST, base + i)], 0.0)
        for i, region in enumerate(REGIONS)
    }
    for proxy in region_proxies.values():
        await proxy.start()
    config = workdir / "mrcache.toml"
    config.write_text(config_text(NAMESPACES, origin, proxies, interval))
    bootstrap = f"{HOST}:{proxy_port}"
    up = await asyncio.to_thread(
        start_up,
        workdir,
        [
            "--config",
            str(config),
            "--kafka",
            bootstrap,
            "--replicas",
            str(replicas),
            "--base-port",
            str(base),
            "--ready-timeout",
            "120",
        ],
        count=len(REGIONS),
        env={"MRCACHE_KAFKA__PUBLISH_TIMEOUT": "1.0", "PYTHONUNBUFFERED": "1"},
    )
    platform = Platform(
        workdir,
        broker,
        broker_proxy,
        region_proxies,
        origin,
        up,
        bootstrap,
        f"{HOST}:{broker_port}",
    )
    try:
        cluster = await asyncio.to_thread(up.cluster)
    except BaseException:
        await platform.stop()
        raise
    platform.replicas = {r: list(e["replicas"]) for r, e in cluster["regions"].items()}
    platform.services = dict(cluster["services"])
    platform.redis = {r: e["redis"] for r, e in cluster["regions"].items()}
    return platform


@contextlib.asynccontextmanager
async def running_platform(workdir: Path, database: Database, **kwargs: Any) -> Any:
    platform = await start_platform(workdir, database, **kwargs)
    try:
        yield platform
    finally:
        await platform.stop()


def log_tails(platform: Platform, lines: int = 30) -> str:
    """The last lines of every service log, for a failed run's report."""
    out = []
    for path in sorted((platform.up.state_dir / "logs").glob("*.log")):
        text = path.read_text(errors="replace").splitlines()[-lines:]
        out.append(f"--- {path.name} ---\n" + "\n".join(text))
    return "\n".join(out)
