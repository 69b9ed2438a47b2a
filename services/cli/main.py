"""``mrcache``: start, inspect and stop a local multi-region platform.

``mrcache up`` runs in the foreground; ``mrcache status``, ``mrcache check`` and
``mrcache down`` find it through ``<state-dir>/cluster.json``. Exit codes: 0 success, 1 failure
(nothing running, a process failed, a port in use), 2 bad arguments or config.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from aiokafka.errors import KafkaError

from libs.common.auth import INTERNAL_HEADER
from libs.common.config import load_platform_config
from libs.common.errors import ConfigError
from libs.common.homes import home_finder
from libs.common.naming import MAX_WARM_KEYS
from libs.common.settings import KafkaSettings
from services.cli import down, status, up, warm
from services.cli.errors import CliError
from services.cli.state import read_state
from services.cli.table import render
from services.meter.meter import Meter, measure
from services.meter.report import TABLE_HEADERS, format_delay

DEFAULT_STATE_DIR = Path(".mrcache")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mrcache`` console script."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "up":
            return up.run(
                config_file=args.config,
                regions=args.regions,
                base_port=args.base_port,
                state_dir=args.state_dir,
                ready_timeout=args.ready_timeout,
                redis_cluster=args.redis_cluster,
                kafka=args.kafka,
                replicas=args.replicas,
                on_failure=args.on_failure,
            )
        if args.command == "down":
            return down.run(state_dir=args.state_dir, timeout=args.timeout)
        if args.command == "warm":
            return warm.run(
                state_dir=args.state_dir,
                source=args.source,
                target=args.target,
                top=args.top,
                rate=args.rate,
                batch=args.batch,
                ns=args.ns,
            )
        if args.command == "check":
            return check(
                state_dir=args.state_dir,
                duration=args.duration,
                delays=args.delays,
                sample_rate=args.sample_rate,
                max_check_rate=args.max_check_rate,
            )
        return status.run(state_dir=args.state_dir)
    except ConfigError as exc:
        print(f"mrcache {args.command}: {exc.message}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"mrcache {args.command}: {exc.message}", file=sys.stderr)
        return exc.exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mrcache", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up_cmd = commands.add_parser("up", help="start a local platform in the foreground")
    up_cmd.add_argument("--config", type=Path, help="platform config file (TOML)")
    up_cmd.add_argument(
        "--regions",
        help="comma-separated regions, in port order "
        "(default: the config's [platform] regions, else us-east,eu-west,ap-south)",
    )
    up_cmd.add_argument(
        "--base-port", type=_port, default=8100, help="port of the first region (default 8100)"
    )
    up_cmd.add_argument(
        "--redis-cluster",
        action="store_true",
        help="run each region on a Redis Cluster of 6 redis-server processes "
        "(3 primaries, 3 replicas), made anew by each up, instead of one redis-server",
    )
    up_cmd.add_argument(
        "--kafka",
        metavar="BOOTSTRAP",
        help="use this Kafka (host:port[,host:port]) instead of starting the embedded broker; "
        "its topics are created when missing",
    )
    up_cmd.add_argument(
        "--replicas",
        type=_replicas,
        default=1,
        help="regional_cache processes per region, sharing the region's Redis (default 1); "
        "the first serves on base-port + i, the others on free ports listed in cluster.json",
    )
    up_cmd.add_argument(
        "--on-failure",
        choices=("restart", "stop"),
        default="restart",
        help="what a process that exits on its own causes: restart it after a growing delay "
        "(default), or stop the whole platform",
    )
    up_cmd.add_argument(
        "--ready-timeout",
        type=_seconds,
        default=60.0,
        help="seconds the whole platform may take to get ready (default 60)",
    )

    down_cmd = commands.add_parser("down", help="stop the platform running in the state dir")
    down_cmd.add_argument(
        "--timeout",
        type=_seconds,
        default=30.0,
        help="seconds to wait before signalling leftover processes directly (default 30)",
    )

    commands.add_parser("status", help="show each region's health and each process")

    check_cmd = commands.add_parser(
        "check",
        help="measure how fresh each region reads after a write (run load meanwhile)",
        description="Samples the invalidations published while it runs (key writes and "
        "deletes, namespace and tag invalidations, Debezium change events), asks every "
        "region DELAY seconds after each what it would serve a client for its keys (without "
        "filling or refreshing anything), and prints per region and delay (each key's home "
        "region apart) how many answers were fresh, stale (an older version, or a copy or "
        "404 the invalidation voided), not cached or errors, the stale rate's upper bound at "
        "95%% confidence and the nines it supports. Only events published during the "
        "--duration window are measured: run your load meanwhile (with none, it says so). "
        "Set MRCACHE_INTERNAL_TOKEN when the regions require API keys.",
    )
    check_cmd.add_argument(
        "--duration",
        type=_seconds,
        default=30.0,
        help="seconds during which writes are sampled (default 30); the command then waits "
        "for the largest delay so the last checks finish",
    )
    check_cmd.add_argument(
        "--delays",
        type=_delays,
        default=(1.0, 5.0),
        help="comma-separated seconds after each write at which every region is read (default 1,5)",
    )
    check_cmd.add_argument(
        "--sample-rate",
        type=_rate,
        default=0.1,
        help="fraction of writes checked, chosen by a hash of the event id (default 0.1)",
    )
    check_cmd.add_argument(
        "--max-check-rate",
        type=float,
        default=0.0,
        help="checks a second at most, whatever the write rate; more are shed and counted "
        "(default 0: no limit)",
    )

    warm_cmd = commands.add_parser(
        "warm",
        help="fill a region with another region's hottest keys",
        description="Copies the source region's hottest keys (ranked by recent reads) into "
        "the target region, each only if the target knows nothing newer, paced to --rate "
        "keys per second so the target's users keep their latency. Set "
        "MRCACHE_INTERNAL_TOKEN when the regions require API keys.",
    )
    warm_cmd.add_argument("--from", dest="source", required=True, help="region to copy from")
    warm_cmd.add_argument("--to", dest="target", required=True, help="region to warm")
    warm_cmd.add_argument(
        "--top", type=_count, default=1000, help="how many of the hottest keys (default 1000)"
    )
    warm_cmd.add_argument(
        "--rate",
        type=_positive,
        default=500.0,
        help="keys copied per second at most (default 500)",
    )
    warm_cmd.add_argument("--ns", help="only keys of this namespace (default: every namespace)")
    warm_cmd.add_argument(
        "--batch",
        type=_batch,
        default=10,
        help="keys per request to the target, at most 500 (default 10: small batches keep "
        "the paced load smooth)",
    )

    for command in commands.choices.values():
        command.add_argument(
            "--state-dir",
            type=Path,
            default=DEFAULT_STATE_DIR,
            help=f"where cluster.json, logs and Redis data live (default {DEFAULT_STATE_DIR})",
        )
    return parser


def check(
    *,
    state_dir: Path,
    duration: float,
    delays: Sequence[float],
    sample_rate: float,
    max_check_rate: float = 0.0,
) -> int:
    """``mrcache check``: meter the running platform for ``duration`` seconds, print the table."""
    state = read_state(state_dir)
    platform = load_platform_config(Path(state.config)) if state.config else None
    headers: dict[str, str] = {}
    if token := os.environ.get("MRCACHE_INTERNAL_TOKEN"):
        headers[INTERNAL_HEADER] = token
    if key := os.environ.get("MRCACHE_API_KEY"):
        headers["Authorization"] = f"Bearer {key}"
    meter = Meter(
        KafkaSettings(bootstrap=state.kafka),
        {name: endpoints.url for name, endpoints in state.regions.items()},
        sample_rate=sample_rate,
        delays=delays,
        max_check_rate=max_check_rate,
        headers=headers,
        home_of=home_finder(platform) if platform is not None else None,
        debezium=platform.relay.debezium if platform is not None else (),
    )
    waits = ", ".join(format_delay(d) for d in meter.delays)

    def started() -> None:
        print(
            f"mrcache check: measuring invalidations for {duration:g} s "
            f"(sample rate {sample_rate:g}, probes after {waits})",
            file=sys.stderr,
            flush=True,
        )

    try:
        report = asyncio.run(measure(meter, duration=duration, on_ready=started))
    except TimeoutError:
        raise CliError(f"could not follow the event topic on {state.kafka} in time") from None
    except (KafkaError, OSError) as exc:  # the broker is unreachable
        raise CliError(f"cannot reach Kafka at {state.kafka}: {exc!r}") from None
    if not report.sampled_events:
        print(
            f"no writes sampled during the {duration:g} s window (sample rate {sample_rate:g}): "
            "run load against the platform while `mrcache check` runs"
        )
        return 0
    print(render(TABLE_HEADERS, report.table_rows()))
    kinds = ", ".join(f"{n} {kind}" for kind, n in report.sampled.items())
    print(
        f"\n{report.sampled_events} invalidations sampled in {duration:g} s ({kinds}; sample "
        f"rate {sample_rate:g}), their keys probed in every region after {waits}.\n"
        "fresh: not an older version than the event's; stale: an older version, or a copy "
        "or 404 the event voided; not cached: the region would fill from the home region "
        "or the origin. FRESH % is among fresh and stale; STALE ≤ is the stale rate's upper "
        "bound at 95% confidence (Clopper-Pearson), NINES the nines that bound supports."
    )
    if report.late:
        print(
            f"{report.late} checks skipped (LATE): they could not start within "
            f"{meter.max_lateness:g} s of their time"
        )
    if report.overflow or report.shed:
        print(f"{report.overflow} checks dropped (queue full), {report.shed} shed (rate cap)")
    if report.published_late:
        print(
            f"{report.published_late} events reached the broker over 1 s after their write "
            f"(up to {report.publish_lag_max_ms / 1000:.1f} s: an outbox drained late)"
        )
    if report.pending:
        print(f"{report.pending} checks did not finish in time and are not counted")
    return 0


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not in 1..65535")
    return port


def _whole(text: str, high: int) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= count <= high:
        raise argparse.ArgumentTypeError(f"{count} is not in 1..{high}")
    return count


def _count(text: str) -> int:
    return _whole(text, 10_000)


def _replicas(text: str) -> int:
    return _whole(text, 8)


def _batch(text: str) -> int:
    return _whole(text, MAX_WARM_KEYS)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0")
    return value


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0")
    return seconds


def _delays(text: str) -> tuple[float, ...]:
    try:
        delays = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of seconds like 1,5") from None
    if not all(d > 0 for d in delays):
        raise argparse.ArgumentTypeError(f"{text}: every delay must be more than 0")
    return delays


def _rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < rate <= 1:
        raise argparse.ArgumentTypeError(f"{text} must be in (0, 1]")
    return rate


if __name__ == "__main__":
    sys.exit(main())
