"""``mrcache up``: run a complete local platform in the foreground until interrupted."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

from libs.common import logs
from services.cli.configfile import write_config
from services.cli.plan import Plan, make_plan, resolve_config
from services.cli.platform import describe, start_platform
from services.cli.state import (
    ClusterState,
    cluster_path,
    remove_state,
    supervisor_lock,
    write_state,
)
from services.cli.supervisor import (
    Interrupted,
    OnFailure,
    StartupFailed,
    StopFlag,
    Supervisor,
)
from services.cli.table import render

log = logging.getLogger(__name__)


def run(
    *,
    config_file: Path | None,
    regions: str | None,
    base_port: int,
    state_dir: Path,
    ready_timeout: float,
    redis_cluster: bool = False,
    kafka: str | None = None,
    replicas: int = 1,
    on_failure: OnFailure = "restart",
) -> int:
    """Start, print the endpoints, serve until a signal, stop everything.

    A process that crashes meanwhile is restarted (``on_failure="restart"``), or
    ends the platform (``"stop"``). Exit code 0 after a stop signal, 1 when the
    platform failed to start or (``"stop"``) a process died; configuration errors
    raise before anything starts.
    """
    config = resolve_config(config_file, regions, base_port)
    state_dir = state_dir.absolute()
    logs.configure("info", "text")
    # One line per readiness poll would drown the supervisor's own log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with supervisor_lock(state_dir):
        plan = make_plan(
            config,
            base_port=base_port,
            state_dir=state_dir,
            redis_cluster=redis_cluster,
            external_kafka=kafka,
            replicas=replicas,
        )
        # The lock was free, so a cluster.json here is left by a supervisor that was killed.
        remove_state(state_dir)
        plan.log_dir.mkdir(parents=True, exist_ok=True)
        write_config(plan.config, plan.config_path)
        with StopFlag().installed() as stop_flag:
            supervisor = Supervisor(stop_flag, ready_timeout=ready_timeout, on_failure=on_failure)
            try:
                return _serve(plan, supervisor, stop_flag)
            finally:
                supervisor.stop()
                remove_state(state_dir)
                log.info("platform stopped")


def _serve(plan: Plan, supervisor: Supervisor, stop_flag: StopFlag) -> int:
    try:
        state = start_platform(plan, supervisor)
    except Interrupted:
        log.info("stop signal during startup")
        return 0
    except StartupFailed as exc:
        member = exc.member
        log.error(
            "%s; stopping the platform\n--- last lines of %s ---\n%s",
            exc.message,
            member.proc.log_path,
            member.proc.log_tail(),
        )
        return 1
    except (OSError, ImportError) as exc:  # redis-server or the broker binary missing
        log.error("cannot start the platform: %s", exc)
        return 1
    write_state(plan.state_dir, state)
    print(summary(plan, state), flush=True)
    dead = supervisor.watch(
        restarted=lambda: write_state(plan.state_dir, describe(plan, supervisor))
    )
    if dead is not None:
        log.error(
            "%s (pid %d) exited unexpectedly with code %s; stopping the platform\n"
            "--- last lines of %s ---\n%s",
            dead.key,
            dead.proc.pid,
            dead.exit_code(),
            dead.proc.log_path,
            dead.proc.log_tail(),
        )
        return 1
    assert stop_flag.signum is not None
    log.info("%s received; stopping the platform", signal.Signals(stop_flag.signum).name)
    return 0


def summary(plan: Plan, state: ClusterState) -> str:
    """The endpoint table and how to try the platform, for the user's terminal."""
    table = render(
        ("REGION", "URL", "REDIS"),
        ((name, ep.url, ep.redis) for name, ep in state.regions.items()),
    )
    # The default namespace's home is the first region: a write there needs no other region.
    key_url = f"{plan.url(plan.regions[0])}/v1/ns/default/keys/hello"
    return (
        f"mrcache is up: {len(state.regions)} regions\n\n{table}\n\n"
        f"kafka bootstrap: {state.kafka}\n"
        f"state: {cluster_path(plan.state_dir)}   logs: {plan.log_dir}\n"
        f"try: curl -X PUT --data-binary world {key_url} && curl {key_url}\n"
        f"stop: Ctrl-C, or `mrcache down --state-dir {plan.state_dir}`"
    )
