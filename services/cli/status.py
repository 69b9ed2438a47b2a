"""``mrcache status``: each region's readiness and whether each listed process runs."""

from __future__ import annotations

from pathlib import Path

import httpx

from services.cli import pids
from services.cli.state import read_state
from services.cli.table import render


def run(*, state_dir: Path, timeout: float = 2.0) -> int:
    """Print both tables; exit 0 only when every region is ready and every process runs."""
    state = read_state(state_dir)
    healthy = True
    region_rows: list[tuple[str, str, str]] = []
    with httpx.Client(trust_env=False, timeout=timeout) as client:
        for name, endpoints in state.regions.items():
            ready, text = readiness(client, endpoints.url)
            healthy = healthy and ready
            region_rows.append((name, endpoints.url, text))
    process_rows: list[tuple[str, int, str, int, str]] = []
    for key, pid in state.processes.items():
        alive = pids.running(pid, started_by=state.written_at)
        healthy = healthy and alive
        process_rows.append(
            (
                key,
                pid,
                "running" if alive else "gone",
                state.restarts.get(key, 0),
                state.services.get(key, ""),
            )
        )
    print(render(("REGION", "URL", "READY"), region_rows))
    print()
    print(render(("PROCESS", "PID", "STATE", "RESTARTS", "URL"), process_rows))
    print(f"\nkafka bootstrap: {state.kafka}")
    return 0 if healthy else 1


def readiness(client: httpx.Client, url: str) -> tuple[bool, str]:
    """``GET /readyz``: whether the region is ready, and the reason when it is not."""
    try:
        response = client.get(f"{url}/readyz")
    except httpx.HTTPError as exc:
        return False, f"unreachable: {exc or type(exc).__name__}"
    if response.status_code == 200:
        return True, "ready"
    try:
        reason = str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        reason = response.text[:200]
    return False, f"not ready ({response.status_code}): {reason}"
