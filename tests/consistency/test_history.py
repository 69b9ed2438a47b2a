"""The checker's short run in ``make test``: a seeded schedule of operations and faults
against a real three-region platform, then every invariant of the README.

``python -m bench.consistency --duration 600`` is the long run; a failing history here
prints its minimal failing histories and the command that replays its seed.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.consistency.run import RunConfig, run, summary

SEED = 20261203


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_a_seeded_run_with_faults_keeps_every_invariant(tmp_path: Path) -> None:
    config = RunConfig(seed=SEED, workdir=tmp_path, duration=75.0, clients=10)
    history, verdict = await run(config)
    report = summary(config, history, verdict)
    assert verdict.ok, report
    # the run did what it claims: faults of several kinds, and enough operations per kind
    kinds = Counter(f.kind for f in history.faults)
    assert len(kinds) >= 5, report
    acked = Counter(op.kind for op in history.ops if op.outcome == "ok")
    assert acked["put"] > 500 and acked["get"] > 2000, report
    assert acked["inv_ns"] + acked["inv_tag"] > 20, report
    assert verdict.checked["converged"] > 0 and verdict.checked["durable-event"] > 500, report
