"""``mrcache down``: stop the platform whose cluster.json is in the state directory."""

from __future__ import annotations

import signal
from pathlib import Path

from services.cli import pids
from services.cli.errors import CliError
from services.cli.state import CLUSTER_FILE, SUPERVISOR, read_state, remove_state

# After the supervisor's own grace: how long a process gets after SIGTERM, then SIGKILL.
ESCALATION_WAIT = 5.0


def run(*, state_dir: Path, timeout: float) -> int:
    """SIGTERM the supervisor (it stops its children in order) and wait until all are gone.

    A process still running after ``timeout`` gets SIGTERM itself, then SIGKILL.
    """
    state = read_state(state_dir)
    started_by = state.written_at
    listed = {
        key: pid for key, pid in state.processes.items() if pids.running(pid, started_by=started_by)
    }
    if not listed:
        remove_state(state_dir)
        raise CliError(f"no platform is running in {state_dir} (removed a stale {CLUSTER_FILE})")
    supervisor = listed.get(SUPERVISOR)
    print(f"stopping the platform in {state_dir}", flush=True)
    # Without a supervisor nobody keeps the order: every process gets SIGTERM at once.
    pids.send([supervisor] if supervisor else listed.values(), signal.SIGTERM)
    left = pids.wait_gone(listed.values(), started_by=started_by, timeout=timeout)
    if left:
        print(
            f"still running after {timeout:g} s: pids {sorted(left)}; sending SIGTERM", flush=True
        )
        pids.send(left, signal.SIGTERM)
        left = pids.wait_gone(left, started_by=started_by, timeout=ESCALATION_WAIT)
    killed = left
    if left:
        print(f"still running: pids {sorted(left)}; sending SIGKILL", flush=True)
        pids.send(left, signal.SIGKILL)
        left = pids.wait_gone(left, started_by=started_by, timeout=ESCALATION_WAIT)
    remove_state(state_dir)
    for key, pid in listed.items():
        what = "could not stop" if pid in left else "killed" if pid in killed else "stopped"
        print(f"{what} {key} (pid {pid})")
    if left:
        raise CliError(f"processes {sorted(left)} are still running")
    return 0
