"""What a local platform runs, in which order: the broker, one Redis per region, services.

Service roles are data (:data:`SERVICE_ROLES`). A later role, such as the
invalidation relay of each region or the one reconciler, is one more entry
with its module, environment and readiness probe: it starts once the roles
before it are ready and stops before them.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from libs.common.kafka import ensure_topics
from libs.common.processes import (
    broker_process,
    create_cluster,
    port_open,
    redis_cluster_processes,
    redis_process,
    service_process,
)
from libs.common.settings import KafkaSettings
from services.cli.errors import CliError
from services.cli.plan import HOST, Plan
from services.cli.state import SUPERVISOR, ClusterState, RegionEndpoints
from services.cli.supervisor import Member, StartupFailed, Supervisor

# The scope of a process that exists once per platform, as in "broker:local".
LOCAL = "local"
TOPICS_TIMEOUT = 30.0
CLUSTER_TIMEOUT = 60.0


@dataclass(frozen=True)
class ServiceRole:
    """A Python service run as ``python -m <module>``, per region or once (scope ``local``),
    or in the scopes ``scoped`` names (each replica of a region's cache)."""

    name: str
    module: str
    env: Callable[[Plan, str], dict[str, str]]
    ready: Callable[[Plan, str], bool]
    per_region: bool = True
    scoped: Callable[[Plan], tuple[str, ...]] | None = None

    def scopes(self, plan: Plan) -> tuple[str, ...]:
        if self.scoped is not None:
            return self.scoped(plan)
        return plan.regions if self.per_region else (LOCAL,)


def service_env(plan: Plan, region: str) -> dict[str, str]:
    """What every service of a region needs: its Redis, the broker, the shared config."""
    return {
        "MRCACHE_REGION": region,
        "MRCACHE_REDIS__URL": plan.redis_url(region),
        "MRCACHE_REDIS__CLUSTER": "true" if plan.redis_cluster else "false",
        "MRCACHE_KAFKA__BOOTSTRAP": plan.kafka,
        "MRCACHE_CONFIG": str(plan.config_path),
        # Text logs: the supervisor shows their last lines when a process fails.
        "MRCACHE_LOG_FORMAT": "text",
    }


def _replica(plan: Plan, scope: str) -> tuple[str, int]:
    """The region and port of a regional_cache scope (``us-east`` or ``us-east/2``)."""
    region = scope.split("/", 1)[0]
    return region, dict(plan.replicas(region))[scope]


def regional_cache_env(plan: Plan, scope: str) -> dict[str, str]:
    region, port = _replica(plan, scope)
    urls = {name: plan.peer_url(name) for name in plan.regions}
    return {
        **service_env(plan, region),
        "MRCACHE_HOST": HOST,
        "MRCACHE_PORT": str(port),
        "MRCACHE_REGION_URLS": json.dumps(urls),
    }


def regional_cache_ready(plan: Plan, scope: str) -> bool:
    return _http_ok(f"http://{HOST}:{_replica(plan, scope)[1]}/readyz")


def regional_cache_scopes(plan: Plan) -> tuple[str, ...]:
    return tuple(scope for region in plan.regions for scope, _ in plan.replicas(region))


def relay_env(plan: Plan, region: str) -> dict[str, str]:
    return {
        **service_env(plan, region),
        "MRCACHE_HOST": HOST,
        "MRCACHE_PORT": str(plan.relay_ports[region]),
    }


def relay_ready(plan: Plan, region: str) -> bool:
    """Ready once it holds its partitions, so no event published after `up` is missed."""
    return _http_ok(f"http://{HOST}:{plan.relay_ports[region]}/readyz")


def _http_ok(url: str) -> bool:
    try:
        with httpx.Client(trust_env=False, timeout=1.0) as client:
            return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def reconciler_env(plan: Plan, _: str) -> dict[str, str]:
    first = plan.regions[0]
    return {
        **service_env(plan, first),
        "MRCACHE_HOST": HOST,
        "MRCACHE_PORT": str(plan.reconciler_port),
        "MRCACHE_REGION_REDIS": json.dumps({r: plan.redis_url(r) for r in plan.regions}),
    }


def reconciler_ready(plan: Plan, _: str) -> bool:
    return _http_ok(f"http://{HOST}:{plan.reconciler_port}/readyz")


def meter_env(plan: Plan, _: str) -> dict[str, str]:
    first = plan.regions[0]
    return {
        **service_env(plan, first),
        "MRCACHE_HOST": HOST,
        "MRCACHE_PORT": str(plan.meter_port),
        "MRCACHE_REGION_URLS": json.dumps({r: plan.url(r) for r in plan.regions}),
    }


def meter_ready(plan: Plan, _: str) -> bool:
    """Ready once it follows the end of the topic: writes after `up` are measured."""
    return _http_ok(f"http://{HOST}:{plan.meter_port}/readyz")


SERVICE_ROLES: tuple[ServiceRole, ...] = (
    ServiceRole(
        "regional_cache",
        "services.regional_cache",
        regional_cache_env,
        regional_cache_ready,
        scoped=regional_cache_scopes,
    ),
    ServiceRole("invalidation_relay", "services.invalidation_relay", relay_env, relay_ready),
    ServiceRole(
        "reconciler", "services.reconciler", reconciler_env, reconciler_ready, per_region=False
    ),
    ServiceRole("meter", "services.meter", meter_env, meter_ready, per_region=False),
)


def _start_redis_clusters(plan: Plan, supervisor: Supervisor) -> None:
    """Per region a Redis Cluster of 3 primaries and 3 replicas, made anew each time."""
    members: list[Member] = []
    for region in plan.regions:
        shutil.rmtree(plan.redis_dir(region), ignore_errors=True)
        procs = redis_cluster_processes(
            plan.redis_nodes[region],
            plan.redis_dir(region),
            name=f"redis-{region}",
            bus_ports=plan.redis_bus[region],
        )
        members += [
            Member(f"redis-{n}:{region}", proc, functools.partial(port_open, HOST, port))
            for n, (proc, port) in enumerate(zip(procs, plan.redis_nodes[region], strict=True), 1)
        ]
    supervisor.launch(members)
    for region in plan.regions:
        try:
            create_cluster(plan.redis_nodes[region], timeout=CLUSTER_TIMEOUT)
        except (RuntimeError, TimeoutError, OSError, subprocess.SubprocessError) as exc:
            first = next(m for m in members if m.key.endswith(f":{region}"))
            raise StartupFailed(first, f"could not form the Redis Cluster: {exc}") from None


def _create_topics(plan: Plan) -> None:
    asyncio.run(
        asyncio.wait_for(
            ensure_topics(
                KafkaSettings(bootstrap=plan.kafka),
                extra=[m.topic for m in plan.config.relay.debezium],
            ),
            TOPICS_TIMEOUT,
        )
    )


def start_platform(plan: Plan, supervisor: Supervisor) -> ClusterState:
    """Start everything through ``supervisor`` and describe it for cluster.json."""
    broker: Member | None = None
    if plan.kafka_port is not None:
        broker = Member(
            f"broker:{LOCAL}",
            broker_process(plan.kafka_port, plan.log_dir),
            functools.partial(port_open, HOST, plan.kafka_port),
            # memory storage: a restarted broker starts without topics
            after_restart=functools.partial(_create_topics, plan),
        )
        supervisor.launch([broker])
    if plan.redis_cluster:
        _start_redis_clusters(plan, supervisor)
    else:
        supervisor.launch(
            [
                Member(
                    f"redis:{region}",
                    redis_process(
                        plan.redis_ports[region],
                        plan.redis_dir(region),
                        name=f"redis-{region}",
                        persistent=True,
                    ),
                    functools.partial(port_open, HOST, plan.redis_ports[region]),
                )
                for region in plan.regions
            ]
        )
    # Before any service: every consumer must see the same partitions from the first event.
    try:
        _create_topics(plan)
    except Exception as exc:
        if broker is None:
            raise CliError(f"could not create the Kafka topics on {plan.kafka}: {exc!r}") from None
        raise StartupFailed(broker, f"could not create the Kafka topics: {exc!r}") from None
    for role in SERVICE_ROLES:
        supervisor.launch(
            [
                Member(
                    f"{role.name}:{scope}",
                    service_process(
                        role.module, f"{role.name}-{scope}", role.env(plan, scope), plan.log_dir
                    ),
                    functools.partial(role.ready, plan, scope),
                )
                for scope in role.scopes(plan)
            ]
        )
    return describe(plan, supervisor)


def describe(plan: Plan, supervisor: Supervisor) -> ClusterState:
    """What cluster.json says of the running platform (again after each restart: new pids)."""
    return ClusterState(
        regions={
            region: RegionEndpoints(
                url=plan.url(region),
                redis=plan.redis_url(region),
                redis_cluster=plan.redis_cluster,
                redis_nodes=[f"{HOST}:{port}" for port in plan.redis_nodes[region]],
                replicas=[f"http://{HOST}:{port}" for _, port in plan.replicas(region)],
            )
            for region in plan.regions
        },
        kafka=plan.kafka,
        processes={SUPERVISOR: os.getpid(), **{m.key: m.proc.pid for m in supervisor.members}},
        services={
            **{
                f"invalidation_relay:{region}": f"http://{HOST}:{plan.relay_ports[region]}"
                for region in plan.regions
            },
            f"reconciler:{LOCAL}": f"http://{HOST}:{plan.reconciler_port}",
            f"meter:{LOCAL}": f"http://{HOST}:{plan.meter_port}",
        },
        restarts=dict(supervisor.restarts),
        on_failure=supervisor.on_failure,
        config=str(plan.config_path),
    )
