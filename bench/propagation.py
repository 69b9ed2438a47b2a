"""Invalidation propagation benchmark: how fast a write in the home region reaches the others.

``python -m bench.propagation [--rates 200,1000] [--duration 30] [--wan]``

Local mode (always, unless ``--skip-local``) starts a platform with
``mrcache up`` (its own state dir and free base port, regions
us-east,eu-west,ap-south; us-east is the default namespace's home), pre-creates
``--keys`` keys, then for each rate runs an open-loop writer (request *i*
scheduled at ``start + i/rate``, ``--connections`` keep-alive connections)
rotating over the keys in us-east for ``--duration`` seconds, and reports per
other region (see :mod:`bench.propagation_measure` for exactly how):

* relay histogram: publish → applied, from the relay's
  ``mrcache_invalidation_lag_seconds`` (bucket-interpolated, coarse);
* write → applied: the home region's apply time (the write's version is its
  Redis time in µs) → the region's apply time (the ``ts`` of the superseded
  marker the relay writes, ms), found by polling that region's Redis;
* ack → applied: the client's receipt of the 200 → the region's apply time;
* end-to-end (eu-west): ack → a poller GETting the key in eu-west sees the new
  ETag, for one write in ``--e2e-every``;
* writes achieved/s, the writer's send lag and errors.

WAN mode (``--wan``): the same measurement on a platform whose regions live in
separate network namespaces (``ip netns``, veth pairs on a bridge, addresses in
``--wan-subnet``, a private /24 created and deleted by this script) and reach
each other only through userspace delay proxies holding bytes
``--delay-ms`` (40) each way — this kernel has no ``netem`` qdisc. The broker
sits in us-east (direct for us-east, one WAN hop for the others), each region
keeps its Redis, cache and relay local, and a fill from eu-west to us-east
crosses the WAN. :mod:`bench.wan.platform` documents the topology; the run
prints it. Needs root (``ip netns``). Results are printed next to the loopback
figures with their ratio.

Every process is stopped and every namespace deleted at the end, also on error
or Ctrl-C / SIGTERM. ``--json FILE`` also writes every figure as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from bench.kafka_floor import floor
from bench.propagation_measure import (
    PlatformResult,
    RateResult,
    RegionTarget,
    RunConfig,
    Summary,
    Target,
    measure,
)
from bench.wan.netns import WanNet
from bench.wan.platform import WanPlatform
from libs.common.processes import ManagedProcess, free_base_port, wait_until

REGIONS = ("us-east", "eu-west", "ap-south")
T = TypeVar("T")


# ---------------------------------------------------------------- running things


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop; SIGTERM cancels it like Ctrl-C does (its finally blocks run)."""

    async def main() -> T:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await coro

    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
            return asyncio.run(main())
        return uvloop.run(main())
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        # closing the loop reset SIGTERM to its default; the platform still has to stop
        signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    del signum, frame
    raise KeyboardInterrupt


def mrcache_argv() -> list[str]:
    script = Path(sys.executable).with_name("mrcache")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "services.cli.main"]


def up_argv(
    regions: Sequence[str], base_port: int, state_dir: Path, config: Path | None
) -> list[str]:
    """``mrcache up`` of ``regions`` on ``base_port`` + i, its state in ``state_dir``."""
    argv = [
        *mrcache_argv(),
        "up",
        "--regions",
        ",".join(regions),
        "--base-port",
        str(base_port),
        "--state-dir",
        str(state_dir),
    ]
    return argv if config is None else [*argv, "--config", str(config)]


def relay_metrics_url(pid: int) -> str | None:
    """The relay's metrics URL from its environment (``MRCACHE_HOST`` / ``MRCACHE_PORT``)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    env = dict(
        item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item
    )
    port = env.get("MRCACHE_PORT")
    host = env.get("MRCACHE_HOST", "127.0.0.1")
    return f"http://{host}:{port}/metrics" if port else None


def run_local(args: argparse.Namespace, cfg: RunConfig) -> PlatformResult:
    own_dir = args.state_dir is None
    state_dir = Path(tempfile.mkdtemp(prefix="mrcache-propagation-")) if own_dir else args.state_dir
    state_dir = state_dir.absolute()
    base_port = args.base_port or free_base_port(len(REGIONS))
    argv = up_argv(REGIONS, base_port, state_dir, args.config)
    up = ManagedProcess("mrcache-up", argv, state_dir / "mrcache-up.log")
    cluster_file = state_dir / "cluster.json"
    print(f"[local] starting: {' '.join(argv)}", flush=True)
    started = time.monotonic()
    try:
        up.start()
        try:
            wait_until(cluster_file.exists, timeout=120, what="mrcache up", alive=up.alive)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}\n--- {up.log_path} ---\n{up.log_tail(30)}") from None
        cluster = json.loads(cluster_file.read_text())
        processes: dict[str, int] = cluster["processes"]
        regions = {
            name: RegionTarget(
                url=info["url"],
                redis=info["redis"],
                relay_metrics=relay_metrics_url(processes.get(f"invalidation_relay:{name}", -1)),
            )
            for name, info in cluster["regions"].items()
        }
        topology = (
            "loopback: `mrcache up` — one Tansu broker, per region a redis-server, a "
            f"regional_cache (127.0.0.1:{base_port}+i) and a relay, all on 127.0.0.1"
        )
        print(f"[local] up in {time.monotonic() - started:.1f} s; {topology}", flush=True)
        target = Target(
            home=REGIONS[0], regions=regions, e2e_region=REGIONS[1], pids=dict(processes)
        )
        result = run_async(
            measure(
                target,
                cfg,
                mode="local",
                topology=topology,
                report=_report,
                on_rate=lambda r: print(render_rate("local", r), flush=True),
            )
        )
        for rate in cfg.rates:
            print(f"[local] bare aiokafka producer -> consumer at {rate:g}/s ...", flush=True)
            result.floors[rate] = run_async(floor(str(cluster["kafka"]), rate, cfg.duration))
        print(render_floors(result), flush=True)
        return result
    finally:
        print("[local] stopping the platform ...", flush=True)
        code = up.stop(grace=45.0)
        if code not in (0, None):
            print(f"[local] mrcache up exited with {code}; log: {up.log_path}", flush=True)
        if own_dir and not args.keep_state:
            shutil.rmtree(state_dir, ignore_errors=True)


def run_wan(args: argparse.Namespace, cfg: RunConfig) -> PlatformResult:
    net = WanNet.plan(REGIONS, args.wan_subnet)
    own_dir = args.state_dir is None
    if own_dir:
        state_dir = Path(tempfile.mkdtemp(prefix="mrcache-propagation-wan-"))
    else:
        state_dir = args.state_dir / "wan"
    platform = WanPlatform(net, state_dir.absolute(), args.delay_ms, args.config)
    print(f"[wan] creating namespaces and starting the platform ({args.delay_ms:g} ms)", flush=True)
    started = time.monotonic()
    try:
        net.create()
        platform.start()
        topology = platform.describe()
        print(f"[wan] up in {time.monotonic() - started:.1f} s\n{topology}", flush=True)
        endpoints = platform.endpoints()
        target = Target(
            home=REGIONS[0],
            regions={
                name: RegionTarget(url=e.url, redis=e.redis, relay_metrics=e.relay_metrics)
                for name, e in endpoints.items()
            },
            e2e_region=REGIONS[1],
        )
        return run_async(
            measure(
                target,
                cfg,
                mode="wan",
                topology=topology,
                report=_report,
                on_rate=lambda r: print(render_rate("wan", r), flush=True),
            )
        )
    finally:
        print("[wan] stopping the platform and deleting the namespaces ...", flush=True)
        platform.stop()
        for problem in net.destroy():
            print(f"[wan] cleanup: {problem}", file=sys.stderr, flush=True)
        if own_dir and not args.keep_state:
            shutil.rmtree(state_dir, ignore_errors=True)


def _report(line: str) -> None:
    print(line, flush=True)


# ---------------------------------------------------------------- output


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _triple(s: Summary | None) -> str:
    if s is None or s.n == 0:
        return "-"
    return f"{_ms(s.p50)} / {_ms(s.p99)} / {_ms(s.max)}"


def render_rate(mode: str, r: RateResult) -> str:
    header = (
        "region",
        "relay hist p50/p99",
        "write→applied p50/p99/max",
        "ack→applied p50/p99/max",
        "end-to-end p50/p99/max",
        "writes/s",
        "errors",
    )
    rows: list[tuple[str, ...]] = []
    for reg in r.regions:
        hist = (
            f"≈{_ms(reg.relay_hist.p50)} / ≈{_ms(reg.relay_hist.p99)}"
            if reg.relay_hist is not None and reg.relay_hist.count
            else "-"
        )
        rows.append(
            (
                reg.region,
                hist,
                _triple(reg.write_to_applied),
                _triple(reg.ack_to_applied),
                _triple(reg.e2e),
                f"{r.achieved:.0f}",
                str(r.errors),
            )
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = [
        f"\n== {mode}: {r.rate:g} writes/s for {r.duration:g} s (milliseconds) ==",
        "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.append(
        f"writer: {r.scheduled} scheduled, {r.ok} ok, {r.errors} errors, {r.unsent} unsent "
        f"(backlog at the window's end), {r.achieved:.1f}/s achieved "
        f"(target {r.rate:g}); send lag p99 {_ms(r.send_lag.p99)} ms, max {_ms(r.send_lag.max)} "
        f"ms; PUT latency (open loop) p50 {_ms(r.put_latency.p50)} ms, "
        f"p99 {_ms(r.put_latency.p99)} ms"
    )
    lines.append(
        f"benchmark process CPU while writing: {r.bench_cpu:.2f} cores; "
        f"machine load average (1 min): {r.load1:.1f}"
    )
    if r.cpu_us_per_write:
        spent = sorted(r.cpu_us_per_write.items(), key=lambda kv: -kv[1])
        lines.append(
            "platform CPU per write (µs, first write until applied everywhere): "
            + ", ".join(f"{kind} {us:,.0f}" for kind, us in spent)
            + f"; total {sum(r.cpu_us_per_write.values()):,.0f}"
        )
    if r.achieved < 0.95 * r.rate:
        lines.append(
            f"NOTE: the target rate was not reached ({r.achieved / r.rate:.0%}): requests "
            "queued for a free connection while the home region answered slower than they "
            "were scheduled; the lags at this rate are those of a saturated platform."
        )
    if r.error_kinds:
        lines.append("errors: " + ", ".join(f"{k} x{v}" for k, v in r.error_kinds.items()))
    for reg in r.regions:
        notes = [f"{reg.write_to_applied.n} versions seen applied"]
        if reg.approx:
            notes.append(f"{reg.approx} timed by the poll (marker already replaced)")
        if reg.missing:
            notes.append(f"{reg.missing} NEVER seen within the drain timeout")
        if reg.relay_hist is not None:
            notes.append(
                f"relay histogram: {reg.relay_hist.count} events, highest bucket "
                f"≤{_ms(reg.relay_hist.max_bucket)} ms"
            )
        if reg.relay_outcomes:
            notes.append(
                "outcomes "
                + ", ".join(f"{k}={v:.0f}" for k, v in sorted(reg.relay_outcomes.items()))
            )
        if reg.e2e is not None:
            notes.append(
                f"end-to-end: {reg.e2e.n} samples, {reg.e2e_miss} via a refill (MISS), "
                f"{reg.e2e_timeouts} timeouts"
            )
        lines.append(f"  {reg.region}: " + "; ".join(notes))
    return "\n".join(lines)


def render_floors(result: PlatformResult) -> str:
    """write -> applied of each region against the broker's own publish -> consumed."""
    lines = [
        "\n== the broker's floor: a bare aiokafka producer -> consumer, same broker, same rate ==",
        f"{'rate':<7} {'floor p50/p99/max':<22} {'region':<9} {'write→applied p50/p99':<23} "
        "ratio p50/p99",
    ]
    for r in result.rates:
        bare = result.floors.get(r.rate)
        if bare is None:
            continue
        for reg in r.regions:
            lines.append(
                f"{r.rate:<7g} {_triple(bare):<22} {reg.region:<9} "
                f"{_pair(reg.write_to_applied):<23} "
                f"{_ratio(bare, reg.write_to_applied, 'p50')} / "
                f"{_ratio(bare, reg.write_to_applied, 'p99')}"
            )
    return "\n".join(lines)


def render_comparison(local: PlatformResult, wan: PlatformResult, delay_ms: float) -> str:
    header = ("rate", "region", "metric", "loopback p50/p99", "WAN p50/p99", "ratio p50/p99")
    rows: list[tuple[str, ...]] = []
    local_rates = {r.rate: r for r in local.rates}
    for w in wan.rates:
        lr = local_rates.get(w.rate)
        if lr is None:
            continue
        for wreg in w.regions:
            lreg = next((x for x in lr.regions if x.region == wreg.region), None)
            if lreg is None:
                continue
            pairs: list[tuple[str, Summary | None, Summary | None]] = [
                ("write→applied", lreg.write_to_applied, wreg.write_to_applied),
                ("ack→applied", lreg.ack_to_applied, wreg.ack_to_applied),
            ]
            if wreg.e2e is not None:
                pairs.append(("end-to-end", lreg.e2e, wreg.e2e))
            for name, a, b in pairs:
                rows.append(
                    (
                        f"{w.rate:g}/s",
                        wreg.region,
                        name,
                        _pair(a),
                        _pair(b),
                        f"{_ratio(a, b, 'p50')} / {_ratio(a, b, 'p99')}",
                    )
                )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = [
        f"\n== WAN ({delay_ms:g} ms one way) vs loopback (milliseconds) ==",
        "  ".join(h.ljust(wd) for h, wd in zip(header, widths, strict=True)),
        "  ".join("-" * wd for wd in widths),
    ]
    lines += ["  ".join(c.ljust(wd) for c, wd in zip(row, widths, strict=True)) for row in rows]
    lines.append(
        f"warm-up fills in {REGIONS[1]} (GET MISS → fill from {REGIONS[0]}): loopback p50 "
        f"{_ms(local.warm_fill.p50)} ms, WAN p50 {_ms(wan.warm_fill.p50)} ms"
    )
    return "\n".join(lines)


def _pair(s: Summary | None) -> str:
    return "-" if s is None or s.n == 0 else f"{_ms(s.p50)} / {_ms(s.p99)}"


def _ratio(a: Summary | None, b: Summary | None, attr: str) -> str:
    if a is None or b is None or a.n == 0 or b.n == 0:
        return "-"
    x, y = getattr(a, attr), getattr(b, attr)
    if x is None or y is None or x <= 0:
        return "-"
    return f"x{y / x:.1f}"


# ---------------------------------------------------------------- command line


def _rates(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of rates") from None
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError("rates must be positive")
    return rates


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.propagation",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--rates", type=_rates, default=(200.0, 1000.0), help="writes/s (200,1000)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds per rate (30)")
    p.add_argument("--keys", type=int, default=4000, help="rotating keys written (4000)")
    p.add_argument("--e2e-every", type=int, default=10, help="probe 1 write in N end to end")
    p.add_argument("--connections", type=int, default=32, help="writer connections (32)")
    p.add_argument("--poll-ms", type=float, default=2.0, help="Redis watcher poll interval")
    p.add_argument("--wan", action="store_true", help="also run the WAN emulation (needs root)")
    p.add_argument("--skip-local", action="store_true", help="with --wan: only the WAN run")
    p.add_argument("--delay-ms", type=float, default=40.0, help="WAN one-way delay (40)")
    p.add_argument("--wan-subnet", default="10.213.7.0/24", help="private /24 for the namespaces")
    p.add_argument("--config", type=Path, help="platform config (TOML) passed to the services")
    p.add_argument("--base-port", type=int, help="local mode: first region's port (free one)")
    p.add_argument("--state-dir", type=Path, help="keep state and logs here (default: temp)")
    p.add_argument("--keep-state", action="store_true", help="keep the temporary state dirs")
    p.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.skip_local and not args.wan:
        print("--skip-local needs --wan", file=sys.stderr)
        return 2
    if args.e2e_every < 1 or args.keys < 1:
        print("--keys and --e2e-every must be at least 1", file=sys.stderr)
        return 2
    keys = -(-args.keys // args.e2e_every) * args.e2e_every  # a multiple: see the sampling
    cfg = RunConfig(
        rates=args.rates,
        duration=args.duration,
        keys=keys,
        e2e_every=args.e2e_every,
        connections=args.connections,
        poll_interval=args.poll_ms / 1000.0,
    )
    # Ctrl-C and SIGTERM both end in the finally blocks that stop every process (SIGINT
    # explicitly: a shell starting this in the background may have set it to "ignore").
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_sigterm)
    results: dict[str, PlatformResult] = {}
    started = time.monotonic()
    try:
        if not args.skip_local:
            results["local"] = run_local(args, cfg)
        if args.wan:
            results["wan"] = run_wan(args, cfg)
    except KeyboardInterrupt:
        print("interrupted; everything was stopped", file=sys.stderr)
        return 130
    except RuntimeError as exc:  # a platform that did not start, namespaces that failed
        print(f"error: {exc}\neverything that was started was stopped", file=sys.stderr)
        return 1
    finally:
        if args.json is not None and results:
            args.json.write_text(
                json.dumps({k: dataclasses.asdict(v) for k, v in results.items()}, indent=2)
            )
    print("\n######## summary ########")
    for mode, result in results.items():
        print(f"\n[{mode}] {result.topology}")
        for rate in result.rates:
            print(render_rate(mode, rate))
        if result.floors:
            print(render_floors(result))
    if "local" in results and "wan" in results:
        print(render_comparison(results["local"], results["wan"], args.delay_ms))
    print(f"\ntotal time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
