"""What ``mrcache up`` will start, decided and checked before anything starts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from libs.common.config import PlatformConfig
from libs.common.errors import ConfigError
from libs.common.naming import check_region
from libs.common.processes import free_port, port_free
from services.cli.configfile import effective_config
from services.cli.errors import CliError

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Plan:
    """Regions in order (region *i* serves on ``base_port + i``) and every port and path."""

    regions: tuple[str, ...]
    base_port: int
    state_dir: Path
    config: PlatformConfig
    # the embedded broker's port; None with ``external_kafka``
    kafka_port: int | None
    # each region's Redis: one server, or with ``redis_cluster`` the nodes of a Redis
    # Cluster (3 primaries, 3 replicas), the first of which is its seed URL
    redis_nodes: Mapping[str, tuple[int, ...]]
    # the cluster bus port of each node (with ``redis_cluster``), picked with the others
    # so that no two processes of the platform race for one port
    redis_bus: Mapping[str, tuple[int, ...]]
    # health and metrics port of each region's relay
    relay_ports: Mapping[str, int]
    reconciler_port: int
    # health, metrics and report port of the consistency meter
    meter_port: int
    redis_cluster: bool = False
    # bootstrap servers of a Kafka the user runs (``up --kafka``) instead of the embedded one
    external_kafka: str | None = None
    # ports of each region's further regional_cache replicas (the first is base_port + i)
    replica_ports: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def redis_ports(self) -> Mapping[str, int]:
        """The port of each region's Redis (a cluster's seed node)."""
        return {region: nodes[0] for region, nodes in self.redis_nodes.items()}

    def port(self, region: str) -> int:
        return self.base_port + self.regions.index(region)

    def url(self, region: str) -> str:
        return f"http://{HOST}:{self.port(region)}"

    def peer_url(self, region: str) -> str:
        """The URL other regions reach ``region`` at: ``[regions.<name>] url`` when the
        config sets one (a proxy, a load balancer), else its first replica."""
        return self.config.region(region).url or self.url(region)

    def replicas(self, region: str) -> tuple[tuple[str, int], ...]:
        """(scope, port) of each regional_cache of ``region``: ``us-east`` on
        ``base_port + i``, then ``us-east/2``, ``us-east/3`` ... on their own ports."""
        extra = self.replica_ports.get(region, ())
        return (
            (region, self.port(region)),
            *((f"{region}/{n}", port) for n, port in enumerate(extra, 2)),
        )

    def redis_url(self, region: str) -> str:
        return f"redis://{HOST}:{self.redis_ports[region]}/0"

    def redis_dir(self, region: str) -> Path:
        # a cluster is made anew by every `up` (its nodes files name this run's ports)
        return self.state_dir / ("redis-cluster" if self.redis_cluster else "redis") / region

    @property
    def kafka(self) -> str:
        if self.external_kafka is not None:
            return self.external_kafka
        return f"{HOST}:{self.kafka_port}"

    @property
    def config_path(self) -> Path:
        return self.state_dir / "platform.toml"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"


def parse_regions(text: str) -> tuple[str, ...]:
    """``us-east,eu-west`` → names checked against the naming rule, no repeats."""
    names = tuple(name.strip() for name in text.split(","))
    for name in names:
        check_region(name)
    if len(set(names)) != len(names):
        raise ConfigError(f"--regions lists a region twice: {text}")
    return names


def resolve_config(config_file: Path | None, regions: str | None, base_port: int) -> PlatformConfig:
    """The effective config; :class:`ConfigError` for anything the user must fix."""
    config = effective_config(config_file, None if regions is None else parse_regions(regions))
    last = base_port + len(config.platform.regions) - 1
    if last > 65535:
        raise ConfigError(
            f"--base-port {base_port} with {len(config.platform.regions)} regions "
            f"needs ports up to {last}, beyond 65535"
        )
    return config


CLUSTER_NODES = 6


def make_plan(
    config: PlatformConfig,
    *,
    base_port: int,
    state_dir: Path,
    redis_cluster: bool = False,
    external_kafka: str | None = None,
    replicas: int = 1,
) -> Plan:
    """Check the service ports are free and pick free ports for the broker and each Redis."""
    regions = tuple(config.platform.regions)
    service_ports = [base_port + i for i in range(len(regions))]
    busy = [port for port in service_ports if not port_free(port)]
    if busy:
        raise CliError(
            f"port {', '.join(map(str, busy))} on {HOST} is in use; "
            f"region ports are {service_ports[0]}..{service_ports[-1]}: choose another --base-port"
        )
    per_region = CLUSTER_NODES if redis_cluster else 1
    buses = per_region if redis_cluster else 0
    extra = replicas - 1
    kafka_port, reconciler_port, meter_port, *others = _pick_ports(
        3 + (1 + per_region + buses + extra) * len(regions), avoid=service_ports
    )
    relay_ports, others = others[: len(regions)], others[len(regions) :]
    replica_ports, others = others[: extra * len(regions)], others[extra * len(regions) :]
    redis_ports, bus_ports = (
        others[: per_region * len(regions)],
        others[per_region * len(regions) :],
    )
    return Plan(
        regions=regions,
        base_port=base_port,
        state_dir=state_dir,
        config=config,
        kafka_port=None if external_kafka else kafka_port,
        external_kafka=external_kafka,
        replica_ports={
            region: tuple(replica_ports[i * extra : (i + 1) * extra])
            for i, region in enumerate(regions)
        },
        redis_nodes={
            region: tuple(redis_ports[i * per_region : (i + 1) * per_region])
            for i, region in enumerate(regions)
        },
        redis_bus={
            region: tuple(bus_ports[i * buses : (i + 1) * buses])
            for i, region in enumerate(regions)
        },
        relay_ports=dict(zip(regions, relay_ports, strict=True)),
        reconciler_port=reconciler_port,
        meter_port=meter_port,
        redis_cluster=redis_cluster,
    )


def _pick_ports(count: int, *, avoid: Sequence[int]) -> list[int]:
    picked: list[int] = []
    while len(picked) < count:
        port = free_port(HOST)
        if port not in avoid and port not in picked:
            picked.append(port)
    return picked
