"""The consistency checker's long run: ``python -m bench.consistency --duration 600``.

Drives a real three-region platform with concurrent clients, a system of record
and faults on a seeded schedule, then checks the recorded history against the
README's consistency invariants (:mod:`tests.consistency`) and prints the table
of invariants with a minimal failing history for each violation. Exit code 1 when
an invariant broke; ``--seed`` replays a run's schedule.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.consistency.faults import KINDS
from tests.consistency.history import History
from tests.consistency.invariants import check, report
from tests.consistency.run import RunConfig, run, summary

RESULTS = Path(__file__).parent / "results"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.consistency", description=__doc__)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--seed", type=int, default=None, help="replay this run's schedule")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--think", type=float, default=0.05, help="mean seconds between ops")
    parser.add_argument("--interval", type=float, default=2.0, help="reconcile interval")
    parser.add_argument("--bound", type=float, default=None, help="freshness bound (seconds)")
    parser.add_argument(
        "--faults",
        default=",".join(KINDS),
        help="comma-separated fault kinds (empty: none); default every kind",
    )
    parser.add_argument(
        "--history",
        type=Path,
        help="write the history (JSON) here (default: next to the printed report in "
        "bench/results/)",
    )
    parser.add_argument(
        "--check",
        type=Path,
        help="check a saved history instead of running (prints every violation)",
    )
    args = parser.parse_args(argv)
    if args.check is not None:
        saved = History.load(args.check)
        verdict = check(saved)
        print(report(saved, verdict, per_namespace=1000))
        return 0 if verdict.ok else 1
    seed = args.seed if args.seed is not None else random.randrange(1, 1_000_000)
    kinds = {k: KINDS[k] for k in args.faults.split(",") if k}
    with tempfile.TemporaryDirectory(prefix="mrcache-consistency-") as tmp:
        config = RunConfig(
            seed=seed,
            workdir=Path(tmp),
            duration=args.duration,
            clients=args.clients,
            think=args.think,
            interval=args.interval,
            bound=args.bound,
            faults=kinds,
        )
        print(
            f"seed {seed}: {args.duration:g} s, {args.clients} clients, faults: "
            f"{','.join(kinds) or 'none'}",
            flush=True,
        )
        history, verdict = asyncio.run(run(config, progress=True))
        RESULTS.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = f"consistency-{stamp}-seed{seed}"
        if not verdict.ok:  # the services' logs, to see why
            for logs in Path(tmp).glob("state-*/logs"):
                shutil.copytree(logs, RESULTS / f"{name}-logs", dirs_exist_ok=True)
    text = summary(config, history, verdict)
    print(text)
    (RESULTS / f"{name}.txt").write_text(text + "\n")
    history.save(args.history or RESULTS / f"{name}.json")
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
