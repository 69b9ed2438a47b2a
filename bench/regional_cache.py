"""Benchmark of regional_cache GET hits and PUTs against a bare FastAPI + Redis baseline.

``python -m bench.regional_cache`` (``make bench``) starts one redis-server, the
broker, a regional_cache and the baseline app (:mod:`bench.baseline_app`) as
real processes, fills N keys, then measures with the same load generator and
the same concurrency for every target:

* closed loop (``wrk``, max throughput): service GET hit, baseline GET, service PUT;
* open loop (:mod:`bench.loadgen`, paced, latency from the scheduled send time):
  service GET hit and baseline GET at a fixed offered rate.

It prints a table and the targets of the issue (GET hit >= 0.8x the baseline's
req/s; GET hit p50 <= 2 ms at 1000 req/s offered) and writes the figures to
``bench/results/regional_cache.json``. On a machine with two or more cores the
servers get the last core and everything else (load generator, Redis, broker)
the others, so the Python servers are what saturates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import redis

from libs.common.kafka import ensure_topics
from libs.common.processes import (
    ManagedProcess,
    broker_process,
    free_port,
    redis_process,
    service_process,
    wait_port,
    wait_until,
)
from libs.common.settings import KafkaSettings
from tests.support.platform import service_env

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
NS = "bench"
REGION = "us-east"
# the baseline PUT's event topic (12 partitions, like the service's)
BASELINE_TOPIC = "bench.floor"
BASELINE_PREFIX = "bench:"  # the baseline app reads bench:{key}; see bench/baseline_app.py
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- configuration and placement ------------------------------------------------


@dataclass(frozen=True)
class Config:
    keys: int
    value_bytes: int
    duration: float
    rounds: int
    warmup: float
    threads: int
    connections: int
    rate: float
    open_duration: float
    pin: bool
    output: Path
    check: bool


@dataclass(frozen=True)
class Placement:
    """Which CPUs run the servers under test and which run everything else."""

    server_cpus: tuple[int, ...]
    load_cpus: tuple[int, ...]

    @classmethod
    def choose(cls, pin: bool) -> Placement:
        cpus = tuple(sorted(os.sched_getaffinity(0)))
        if not pin or len(cpus) < 2 or shutil.which("taskset") is None:
            return cls((), ())
        return cls(cpus[-1:], cpus[:-1])

    def wrap(self, argv: Sequence[str], cpus: tuple[int, ...]) -> list[str]:
        if not cpus:
            return list(argv)
        return ["taskset", "-c", ",".join(map(str, cpus)), *argv]

    def describe(self) -> str:
        if not self.server_cpus:
            return "not pinned (one CPU, taskset missing or --no-pin): figures are less stable"
        return (
            f"servers under test (regional_cache, baseline) on CPU {_cpus(self.server_cpus)}; "
            f"load generator, redis-server and broker on CPU {_cpus(self.load_cpus)} (taskset)"
        )


def _cpus(cpus: tuple[int, ...]) -> str:
    return ",".join(map(str, cpus))


def key_name(i: int) -> str:
    return f"k{i:05d}"


def value_of(i: int, size: int) -> bytes:
    seed = hashlib.sha256(str(i).encode()).hexdigest().encode()
    return (seed * (size // len(seed) + 1))[:size]


# -- processes ------------------------------------------------------------------


@dataclass
class Platform:
    """Every process of the run; ``stop()`` stops them all, newest first."""

    workdir: Path
    placement: Placement
    procs: list[ManagedProcess] = field(default_factory=list)
    redis_port: int = 0
    broker_port: int = 0
    service_port: int = 0
    baseline_port: int = 0

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def service(self) -> ManagedProcess:
        return self.named("regional_cache")

    @property
    def baseline(self) -> ManagedProcess:
        return self.named("baseline")

    @property
    def redis(self) -> ManagedProcess:
        return self.named("redis")

    def named(self, name: str) -> ManagedProcess:
        return next(p for p in self.procs if p.name == name)

    def _start(self, proc: ManagedProcess, cpus: tuple[int, ...]) -> ManagedProcess:
        proc.argv = self.placement.wrap(proc.argv, cpus)  # taskset execs: the pid stays
        self.procs.append(proc)
        return proc.start()

    def start(self) -> None:
        load, server = self.placement.load_cpus, self.placement.server_cpus
        self.redis_port = free_port()
        redis_proc = self._start(redis_process(self.redis_port, self.workdir / "redis"), load)
        self.broker_port = free_port()
        broker = self._start(broker_process(self.broker_port, self.workdir), load)
        wait_port(redis_proc, self.redis_port)
        wait_port(broker, self.broker_port)
        bootstrap = f"127.0.0.1:{self.broker_port}"
        topics = ensure_topics(KafkaSettings(bootstrap=bootstrap), extra=[BASELINE_TOPIC])
        asyncio.run(asyncio.wait_for(topics, 30))

        self.service_port = free_port()
        env = service_env(REGION, self.service_port, self.redis_url, bootstrap)
        env["MRCACHE_LOG_LEVEL"] = "warning"
        service = self._start(
            service_process("services.regional_cache", "regional_cache", env, self.workdir),
            server,
        )
        self.baseline_port = free_port()
        baseline_env = {
            "BENCH_REDIS_URL": self.redis_url,
            "BENCH_PORT": str(self.baseline_port),
            "BENCH_KAFKA": bootstrap,
            "BENCH_TOPIC": BASELINE_TOPIC,
        }
        baseline = self._start(
            service_process("bench.baseline_app", "baseline", baseline_env, self.workdir),
            server,
        )
        wait_http(service, f"http://127.0.0.1:{self.service_port}/readyz")
        wait_http(baseline, f"http://127.0.0.1:{self.baseline_port}/docs")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop(grace=5.0)

    def check_alive(self) -> None:
        for proc in self.procs:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited\n--- its log ---\n{proc.log_tail()}")


def wait_http(proc: ManagedProcess, url: str) -> None:
    def ok() -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ok, timeout=30, what=f"{proc.name} at {url}", alive=proc.alive)
    except (TimeoutError, RuntimeError) as exc:
        raise RuntimeError(f"{exc}\n--- {proc.name} log ---\n{proc.log_tail()}") from None


# -- data -------------------------------------------------------------------------


def populate(platform: Platform, cfg: Config) -> None:
    """N keys through the service's PUT API, the same values as plain keys for the baseline."""

    async def put_all() -> None:
        limit = asyncio.Semaphore(32)
        base = f"http://127.0.0.1:{platform.service_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10.0) as client:

            async def put(i: int) -> None:
                async with limit:
                    resp = await client.put(
                        f"/v1/ns/{NS}/keys/{key_name(i)}",
                        params={"ttl": "3600"},
                        content=value_of(i, cfg.value_bytes),
                    )
                if resp.status_code != 200:
                    raise RuntimeError(f"PUT {key_name(i)}: {resp.status_code} {resp.text}")

            await asyncio.gather(*(put(i) for i in range(cfg.keys)))

    asyncio.run(put_all())
    with redis.Redis.from_url(platform.redis_url) as client:
        client.mset(
            {BASELINE_PREFIX + key_name(i): value_of(i, cfg.value_bytes) for i in range(cfg.keys)}
        )
    # both targets must serve the stored value before anything is measured
    for i in (0, cfg.keys - 1):
        expected = value_of(i, cfg.value_bytes)
        svc = httpx.get(f"{service_url(platform)}/{key_name(i)}", timeout=5.0)
        if svc.content != expected or svc.headers.get("x-cache") != "HIT":
            raise RuntimeError(f"service GET {key_name(i)}: {svc.status_code} {svc.headers}")
        base = httpx.get(f"{baseline_url(platform)}/{key_name(i)}", timeout=5.0)
        if base.content != expected:
            raise RuntimeError(f"baseline GET {key_name(i)}: {base.status_code}")


def service_url(platform: Platform) -> str:
    return f"http://127.0.0.1:{platform.service_port}/v1/ns/{NS}/keys"


def baseline_url(platform: Platform) -> str:
    return f"http://127.0.0.1:{platform.baseline_port}/k"


_METRIC_RE = re.compile(r"^(mrcache_[a-z_]+_total)\{([^}]*)\} ([0-9.e+-]+)$", re.MULTILINE)


def service_counters(platform: Platform) -> dict[str, float]:
    """The service's counters as ``name{labels}`` → value (hits, misses, publish failures)."""
    text = httpx.get(f"http://127.0.0.1:{platform.service_port}/metrics", timeout=5.0).text
    return {f"{m[1]}{{{m[2]}}}": float(m[3]) for m in _METRIC_RE.finditer(text)}


def _counter_delta(before: dict[str, float], after: dict[str, float], part: str) -> int:
    return round(sum(v - before.get(k, 0.0) for k, v in after.items() if part in k))


# -- load generators ------------------------------------------------------------


def ensure_wrk() -> str | None:
    """The wrk binary, installed with apt-get when missing; None if that fails."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found: installing the Debian package with apt-get ...", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*sudo, "apt-get", "install", "-y", "-qq", "wrk"]
    # a fresh machine may have no package lists yet: update once, then retry
    for argv in (install, [*sudo, "apt-get", "update", "-qq"], install):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(argv, env=env, capture_output=True, timeout=300, check=False)
        if shutil.which("wrk"):
            break
    return shutil.which("wrk")


_WRK_SCRIPT = """\
-- generated by bench/regional_cache.py: rotate over the keys, report as JSON
local paths = {%(paths)s}
local method = "%(method)s"
local body = %(body)s
local headers = {}
if body then headers["Content-Type"] = "application/octet-stream" end
local reqs = {}
local i = 0

init = function(args)
  for idx, p in ipairs(paths) do reqs[idx] = wrk.format(method, p, headers, body) end
  i = math.random(#reqs) - 1
end

request = function()
  i = i %% #reqs + 1
  return reqs[i]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%%.0f,"duration_us":%%.0f,"connect":%%.0f,"read":%%.0f,' ..
    '"write":%%.0f,"status":%%.0f,"timeout":%%.0f,"p50_us":%%.0f,"p90_us":%%.0f,' ..
    '"p99_us":%%.0f,"p999_us":%%.0f,"max_us":%%.0f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
"""


def wrk_script(path: Path, paths: Sequence[str], method: str, body: bytes | None) -> Path:
    path.write_text(
        _WRK_SCRIPT
        % {
            "paths": ",".join(f'"{p}"' for p in paths),
            "method": method,
            "body": f'"{body.decode("ascii")}"' if body is not None else "nil",
        }
    )
    return path


@dataclass
class Target:
    name: str
    proc: ManagedProcess  # the server whose CPU is counted
    port: int
    method: str
    paths: list[str]
    body: bytes | None = None

    @property
    def slug(self) -> str:
        return self.name.replace(" ", "_")


# -- CPU accounting -------------------------------------------------------------


@dataclass
class CpuUse:
    """CPU seconds used during a run, and its wall time."""

    wall: float = 0.0
    server: float = 0.0  # the target's server process
    redis: float = 0.0
    generator: float = 0.0  # wrk or bench.loadgen (waited-for children)
    # busy time of the servers' CPUs not used by the two servers: other processes of
    # the machine and kernel work (softirq); high values mean a disturbed run
    server_core_other: float = 0.0

    def scaled(self, share: float) -> CpuUse:
        return CpuUse(*(getattr(self, f) * share for f in CpuUse.__dataclass_fields__))

    def plus(self, other: CpuUse) -> CpuUse:
        return CpuUse(*(getattr(self, f) + getattr(other, f) for f in CpuUse.__dataclass_fields__))


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads); 0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpus_busy(cpus: tuple[int, ...]) -> float:
    """Busy seconds (user, nice, system, irq, softirq, steal) of these CPUs, or of all."""
    wanted = {f"cpu{c}" for c in cpus} if cpus else {"cpu"}
    busy = 0
    with open("/proc/stat") as stat:
        for line in stat:
            name, *values = line.split()
            if name in wanted:
                user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, values[:8])
                busy += user + nice + system + irq + softirq + steal
    return busy / CLK_TCK


def machine_busy(seconds: float = 1.0) -> float:
    """CPUs' worth of busy time over ``seconds`` (before anything of the benchmark runs)."""
    before = _cpus_busy(())
    time.sleep(seconds)
    return (_cpus_busy(()) - before) / seconds


@contextlib.contextmanager
def cpu_meter(platform: Platform, target: Target) -> Iterator[CpuUse]:
    """Fill a :class:`CpuUse` with what the block used."""
    cpus = platform.placement.server_cpus
    servers: tuple[int, ...] = (platform.service.pid, platform.baseline.pid)
    if not cpus:  # not pinned: everything else of ours counts as ours too
        servers = (*servers, platform.redis.pid, platform.named("broker").pid)

    def snap() -> tuple[float, ...]:
        return (
            time.perf_counter(),
            _proc_cpu(target.proc.pid),
            _proc_cpu(platform.redis.pid),
            _children_cpu(),
            _cpus_busy(cpus) - sum(map(_proc_cpu, servers)),
        )

    use = CpuUse()
    before = snap()
    yield use
    after = snap()
    wall, server, redis_cpu, generator, other = (b - a for a, b in zip(before, after, strict=True))
    if not cpus:
        other -= generator
    use.wall, use.server, use.redis, use.generator = wall, server, redis_cpu, generator
    use.server_core_other = max(0.0, other)


# -- runs -------------------------------------------------------------------------


@dataclass
class Run:
    """One measured run of a load generator against a target."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu: CpuUse
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass
class Row:
    target: str
    mode: str
    generator: str
    rounds: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    server_cpu_pct: float
    server_cpu_us_per_req: float
    redis_cpu_pct: float
    generator_cpu_pct: float
    server_core_other_pct: float
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, target: Target, mode: str, generator: str, runs: Sequence[Run]) -> Row:
        """Totals over the runs; latency percentiles are the mean of the runs' percentiles."""
        requests = sum(r.requests for r in runs)
        seconds = sum(r.seconds for r in runs)
        cpu = CpuUse()
        for r in runs:
            cpu = cpu.plus(r.cpu)
        wall = cpu.wall or 1.0
        extra: dict[str, Any] = dict(runs[-1].extra)
        for counter in ("hits", "misses", "publish_failures"):
            if counter in extra:
                extra[counter] = sum(r.extra.get(counter, 0) for r in runs)
        if len(runs) > 1:
            extra["per_round"] = [
                {"rps": round(r.rps, 1), "p50_ms": r.p50_ms, "p99_ms": r.p99_ms} for r in runs
            ]
        return cls(
            target=target.name,
            mode=mode,
            generator=generator,
            rounds=len(runs),
            rps=round(requests / seconds, 1) if seconds else 0.0,
            p50_ms=round(sum(r.p50_ms for r in runs) / len(runs), 3),
            p99_ms=round(sum(r.p99_ms for r in runs) / len(runs), 3),
            requests=requests,
            errors=sum(r.errors for r in runs),
            server_cpu_pct=round(100 * cpu.server / wall, 1),
            server_cpu_us_per_req=round(1e6 * cpu.server / requests, 1) if requests else 0.0,
            redis_cpu_pct=round(100 * cpu.redis / wall, 1),
            generator_cpu_pct=round(100 * cpu.generator / wall, 1),
            server_core_other_pct=round(100 * cpu.server_core_other / wall, 1),
            extra=extra,
        )


class Runner:
    """Runs one load generator against one target; the same settings for every target."""

    def __init__(self, platform: Platform, cfg: Config, wrk: str | None) -> None:
        self.platform = platform
        self.cfg = cfg
        self.wrk = wrk
        self.scripts = platform.workdir / "scripts"
        self.scripts.mkdir(parents=True, exist_ok=True)

    @property
    def closed_mode(self) -> str:
        if self.wrk is None:
            return f"closed python -c{self.cfg.connections}"
        return f"closed wrk -t{self.cfg.threads} -c{self.cfg.connections}"

    @property
    def open_mode(self) -> str:
        return f"open {self.cfg.rate:g} req/s, {self.cfg.connections} conns"

    def closed(self, target: Target, seconds: float, warmup: float) -> Run:
        """Max throughput: wrk (or the Python generator) with a fixed number of connections."""
        if self.wrk is None:
            return self._python(target, rate=0.0, seconds=seconds, warmup=warmup)
        script = wrk_script(
            self.scripts / f"{target.slug}.lua", target.paths, target.method, target.body
        )
        url = f"http://127.0.0.1:{target.port}/"
        if warmup > 0:
            self._wrk(script, url, warmup)
        with cpu_meter(self.platform, target) as cpu:
            res = self._wrk(script, url, seconds)
        self.platform.check_alive()
        return Run(
            requests=int(res["requests"]),
            seconds=res["duration_us"] / 1e6,
            p50_ms=res["p50_us"] / 1000,
            p99_ms=res["p99_us"] / 1000,
            errors=sum(int(res[k]) for k in ("connect", "read", "write", "status", "timeout")),
            cpu=cpu,
            extra={"p999_ms": res["p999_us"] / 1000, "max_ms": res["max_us"] / 1000},
        )

    def _wrk(self, script: Path, url: str, seconds: float) -> dict[str, float]:
        assert self.wrk is not None
        argv = [
            self.wrk,
            f"-t{self.cfg.threads}",
            f"-c{self.cfg.connections}",
            f"-d{seconds:g}s",
            "--latency",
            "-s",
            str(script),
            url,
        ]
        argv = self.platform.placement.wrap(argv, self.platform.placement.load_cpus)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
        for line in proc.stdout.splitlines():
            if line.startswith("BENCH_JSON "):
                parsed: dict[str, float] = json.loads(line.removeprefix("BENCH_JSON "))
                return parsed
        raise RuntimeError(f"wrk gave no result (exit {proc.returncode}):\n{proc.stderr}")

    def open(self, target: Target) -> Run:
        """Paced at ``cfg.rate``: latency from each request's scheduled send time."""
        return self._python(
            target, rate=self.cfg.rate, seconds=self.cfg.open_duration, warmup=self.cfg.warmup
        )

    def _python(self, target: Target, *, rate: float, seconds: float, warmup: float) -> Run:
        paths_file = self.scripts / f"{target.slug}.paths"
        paths_file.write_text("\n".join(target.paths) + "\n")
        argv = [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--port",
            str(target.port),
            "--method",
            target.method,
            "--paths-file",
            str(paths_file),
            "--body-bytes",
            str(len(target.body or b"")),
            "--rate",
            str(rate),
            "--duration",
            str(seconds),
            "--warmup",
            str(warmup),
            "--connections",
            str(self.cfg.connections),
        ]
        argv = self.platform.placement.wrap(argv, self.platform.placement.load_cpus)
        with cpu_meter(self.platform, target) as cpu:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=seconds + warmup + 60
            )
        self.platform.check_alive()
        if proc.returncode != 0:
            raise RuntimeError(f"bench.loadgen failed (exit {proc.returncode}):\n{proc.stderr}")
        res: dict[str, Any] = json.loads(proc.stdout)
        # the generator's warm-up is inside the metered block: keep the measured share
        cpu = cpu.scaled(seconds / cpu.wall) if cpu.wall > seconds else cpu
        return Run(
            requests=res["requests"],
            seconds=seconds,
            p50_ms=res["latency_ms"]["p50"],
            p99_ms=res["latency_ms"]["p99"],
            errors=res["non_2xx_3xx"] + res["socket_errors"],
            cpu=cpu,
            extra={
                "latency_ms": res["latency_ms"],
                "service_ms": res["service_ms"],
                "send_lag_ms": res["send_lag_ms"],
            },
        )


# -- the run --------------------------------------------------------------------


def targets(platform: Platform, cfg: Config) -> tuple[Target, Target, Target, Target]:
    """Service GET hit, baseline GET, service PUT and baseline PUT (Redis SET + Kafka
    send_and_wait, acks=all), each rotating over the N keys."""
    keys = [key_name(i) for i in range(cfg.keys)]
    svc_get = Target(
        "service GET hit",
        platform.service,
        platform.service_port,
        "GET",
        [f"/v1/ns/{NS}/keys/{k}" for k in keys],
    )
    base_get = Target(
        "baseline GET", platform.baseline, platform.baseline_port, "GET", [f"/k/{k}" for k in keys]
    )
    svc_put = Target(
        "service PUT",
        platform.service,
        platform.service_port,
        "PUT",
        [f"/v1/ns/{NS}/keys/{k}?ttl=3600" for k in keys],
        body=value_of(0, cfg.value_bytes),
    )
    base_put = Target(
        "baseline PUT",
        platform.baseline,
        platform.baseline_port,
        "PUT",
        [f"/k/{k}" for k in keys],
        body=value_of(0, cfg.value_bytes),
    )
    return svc_get, base_get, svc_put, base_put


def measure(platform: Platform, cfg: Config, wrk: str | None) -> list[Row]:
    runner = Runner(platform, cfg, wrk)
    svc_get, base_get, svc_put, base_put = targets(platform, cfg)
    generator = "wrk" if wrk else "bench.loadgen"
    rows: list[Row] = []

    def counted(target: Target, runs: list[Run], run: Callable[[Target], Run]) -> None:
        before = service_counters(platform)
        result = run(target)
        after = service_counters(platform)
        if target.proc is platform.service:
            result.extra["hits"] = _counter_delta(before, after, 'result="hit"')
            result.extra["misses"] = _counter_delta(before, after, 'result="miss"')
            result.extra["publish_failures"] = _counter_delta(before, after, "publish_failures")
        print(
            f"  {target.name:16s} {result.rps:8,.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
            f"p99 {result.p99_ms:6.2f} ms",
            flush=True,
        )
        runs.append(result)

    def alternating(pair: tuple[Target, Target]) -> None:
        """Closed loop, the two targets in turns, so a machine that drifts hits both alike."""
        print(f"{runner.closed_mode}, {cfg.rounds} x {cfg.duration / cfg.rounds:g} s per target:")
        closed: dict[str, list[Run]] = {target.name: [] for target in pair}
        for i in range(cfg.rounds):
            warmup = cfg.warmup if i == 0 else 0.0
            for target in pair:
                seconds = cfg.duration / cfg.rounds
                run = functools.partial(runner.closed, seconds=seconds, warmup=warmup)
                counted(target, closed[target.name], run)
        for target in pair:
            rows.append(Row.of(target, runner.closed_mode, generator, closed[target.name]))

    alternating((base_get, svc_get))

    print(f"{runner.open_mode}, {cfg.open_duration:g} s per target:")
    for target in (base_get, svc_get):
        runs: list[Run] = []
        counted(target, runs, runner.open)
        rows.append(Row.of(target, runner.open_mode, "bench.loadgen", runs))

    # PUTs last: they rewrite the values the GETs above read
    alternating((base_put, svc_put))
    return rows


def _find(rows: list[Row], target: str, mode_prefix: str) -> Row:
    return next(r for r in rows if r.target == target and r.mode.startswith(mode_prefix))


def report(rows: list[Row], cfg: Config, placement: Placement, wrk: str | None) -> dict[str, Any]:
    """Print the table and the targets; return the JSON document."""
    svc_closed = _find(rows, "service GET hit", "closed")
    base_closed = _find(rows, "baseline GET", "closed")
    svc_open = _find(rows, "service GET hit", "open")
    svc_put, base_put = _find(rows, "service PUT", "closed"), _find(rows, "baseline PUT", "closed")
    put_ratio = svc_put.rps / base_put.rps if base_put.rps else 0.0
    base_open = _find(rows, "baseline GET", "open")
    ratio = svc_closed.rps / base_closed.rps if base_closed.rps else 0.0
    cpu_ratio = (
        svc_closed.server_cpu_us_per_req / base_closed.server_cpu_us_per_req
        if base_closed.server_cpu_us_per_req
        else 0.0
    )
    targets = {
        "get_hit_vs_baseline_rps": {
            "value": round(ratio, 3),
            "target": ">= 0.8",
            "met": ratio >= 0.8,
        },
        "put_vs_baseline_rps": {
            "value": round(put_ratio, 3),
            "target": ">= 0.8",
            "met": put_ratio >= 0.8,
        },
        "get_hit_p50_ms_at_rate": {
            "value": svc_open.p50_ms,
            "offered_rps": cfg.rate,
            "achieved_rps": svc_open.rps,
            "target": "<= 2.0",
            "met": svc_open.p50_ms <= 2.0 and svc_open.rps >= 0.95 * cfg.rate,
        },
    }

    headers = ("target", "mode", "req/s", "p50 ms", "p99 ms", "errors", "srv CPU%", "CPU us/req")
    table = [
        (
            r.target,
            r.mode,
            f"{r.rps:,.0f}",
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            str(r.errors),
            f"{r.server_cpu_pct:.0f}",
            f"{r.server_cpu_us_per_req:.0f}",
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return " | ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    print()
    print(
        f"regional_cache benchmark: {cfg.keys} keys of {cfg.value_bytes} B; closed loop "
        f"{cfg.duration:g} s per target ({cfg.rounds} alternating rounds for the GETs), "
        f"open loop {cfg.open_duration:g} s; {cfg.warmup:g} s warm-up per target"
    )
    print(f"placement: {placement.describe()}")
    if wrk is None:
        print("wrk unavailable: the closed loop used the Python generator (bench/loadgen.py)")
    print()
    print(line(headers))
    print("-+-".join("-" * w for w in widths))
    for row in table:
        print(line(row))
    print()
    for r in rows:
        if r.target == "service GET hit":
            print(
                f"{r.target}, {r.mode}: the service counted {r.extra.get('hits', 0)} hits and "
                f"{r.extra.get('misses', 0)} misses (warm-up included)"
            )
        if r.mode.startswith("open"):
            lag, svc = r.extra["send_lag_ms"], r.extra["service_ms"]
            print(
                f"{r.target}, {r.mode}: generator send lag p50 {lag['p50']:.3f} ms, "
                f"p99 {lag['p99']:.3f} ms; from the actual send p50 {svc['p50']:.2f} ms, "
                f"p99 {svc['p99']:.2f} ms"
            )
    put = _find(rows, "service PUT", "closed")
    if put.extra.get("publish_failures"):
        print(f"service PUT: {put.extra['publish_failures']} publishes went to the outbox")
    disturbed = [r for r in rows if r.server_core_other_pct > 15]
    for r in disturbed:
        print(
            f"warning: {r.target}, {r.mode}: {r.server_core_other_pct:.0f}% of the server CPU "
            "went to other processes or the kernel; figures are disturbed"
        )
    print()
    met = targets["get_hit_vs_baseline_rps"]["met"]
    print(
        f"GET hit / baseline req/s (closed loop): {ratio:.2f}  target >= 0.80: "
        f"{'MET' if met else 'NOT MET'}   (server CPU per request: {cpu_ratio:.2f}x the baseline's)"
    )
    met = targets["put_vs_baseline_rps"]["met"]
    print(
        f"PUT / baseline PUT (Redis SET + Kafka send_and_wait, acks=all) req/s: {put_ratio:.2f}"
        f"  target >= 0.80: {'MET' if met else 'NOT MET'}"
    )
    met = targets["get_hit_p50_ms_at_rate"]["met"]
    print(
        f"GET hit p50 at {cfg.rate:g} req/s offered: {svc_open.p50_ms:.2f} ms "
        f"(baseline {base_open.p50_ms:.2f} ms)  target <= 2 ms: {'MET' if met else 'NOT MET'}"
    )

    return {
        "benchmark": "regional_cache",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": _git_commit(),
        "machine": {"cpus": os.cpu_count(), "placement": placement.describe()},
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "load_generator": {"closed": "wrk" if wrk else "bench.loadgen", "open": "bench.loadgen"},
        "results": [asdict(r) for r in rows],
        "ratios": {
            "get_hit_vs_baseline_rps": round(ratio, 3),
            "get_hit_vs_baseline_cpu_per_req": round(cpu_ratio, 3),
            "put_vs_baseline_rps": round(put_ratio, 3),
        },
        "targets": targets,
    }


def _git_commit() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return out.stdout.strip() or None
    return None


def parse_args(argv: Sequence[str] | None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m bench.regional_cache",
        description="GET hits and PUTs of regional_cache vs a bare FastAPI + Redis GET.",
    )
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--duration", type=float, default=10.0, help="closed-loop seconds")
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternating closed-loop GET rounds per target"
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before each run")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=float, default=1000.0, help="open-loop req/s offered")
    parser.add_argument("--open-duration", type=float, default=10.0, help="open-loop seconds")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--output", type=Path, default=RESULTS / "regional_cache.json")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is not met")
    args = parser.parse_args(argv)
    return Config(
        keys=args.keys,
        value_bytes=args.value_bytes,
        duration=args.duration,
        rounds=max(1, args.rounds),
        warmup=args.warmup,
        threads=args.threads,
        connections=args.connections,
        rate=args.rate,
        open_duration=args.open_duration,
        pin=not args.no_pin,
        output=args.output,
        check=args.check,
    )


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    # stop every process on Ctrl-C, SIGTERM or a closed terminal (SIGINT may arrive
    # ignored when started in the background by a script)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    placement = Placement.choose(cfg.pin)
    workdir = RESULTS / "run"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    wrk = ensure_wrk()
    busy = machine_busy()
    if busy > 0.1:
        print(
            f"note: other processes keep {100 * busy:.0f}% of a CPU busy before the run; "
            "the figures will be noisier"
        )
    platform = Platform(workdir, placement)
    started = time.monotonic()
    try:
        print(f"starting redis-server, broker, regional_cache, baseline (logs in {workdir}) ...")
        platform.start()
        print(f"filling {cfg.keys} keys of {cfg.value_bytes} B in both ...")
        populate(platform, cfg)
        rows = measure(platform, cfg, wrk)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every process", file=sys.stderr)
        return 130
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        platform.stop()
    summary = report(rows, cfg, placement, wrk)
    summary["wall_seconds"] = round(time.monotonic() - started, 1)
    summary["machine"]["busy_cpus_before_run"] = round(busy, 2)
    cfg.output.parent.mkdir(parents=True, exist_ok=True)
    cfg.output.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwritten to {cfg.output} ({summary['wall_seconds']:.0f} s)")
    met = all(t["met"] for t in summary["targets"].values())
    return 1 if cfg.check and not met else 0


if __name__ == "__main__":
    raise SystemExit(main())
