"""A local platform whose regions talk to each other only through delay proxies.

Topology (see :mod:`bench.wan.netns` for the addresses):

* the broker (Tansu, memory storage) runs in the first region's namespace — the
  home region of the default namespace — listening on ``0.0.0.0:9092`` and
  advertising ``<public address of that region>:9092``;
* every region namespace runs its redis-server (``:6379``), its regional_cache
  (region *i* on ``:8100+i``) and its invalidation_relay (metrics ``:9100+i``), all configured with
  public addresses only: ``MRCACHE_KAFKA__BOOTSTRAP=<broker public>:9092`` and
  ``MRCACHE_REGION_URLS`` = every region's ``http://<public>:8100``;
* every region namespace also runs one delay proxy (:mod:`services.cli.delayproxy`)
  that listens on each *other* region's public address (its HTTP port, and the
  broker port for the broker's region) and forwards to that region's link
  address after the one-way delay each way.

So the home region produces to the broker directly, the other regions' relays
and publishers reach it over one WAN hop, and a fill from another region to
the home region crosses one WAN hop each way. The benchmark (root namespace)
reaches every region on its link address with no delay.
"""

from __future__ import annotations

import contextlib
import functools
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.wan.netns import WanNet
from libs.common.processes import (
    ManagedProcess,
    broker_process,
    port_open,
    redis_process,
    service_process,
    wait_until,
)
from services.cli.configfile import effective_config, write_config

BROKER_PORT = 9092
REDIS_PORT = 6379
# Region i serves on HTTP_PORT + i (as with ``mrcache up``) and its relay on RELAY_PORT + i:
# a proxy for another region's public address:port and the region's own wildcard
# listener could not share one port number in a namespace.
HTTP_PORT = 8100
RELAY_PORT = 9100


def http_port(index: int) -> int:
    return HTTP_PORT + index


def relay_port(index: int) -> int:
    return RELAY_PORT + index


@dataclass(frozen=True)
class RegionEndpoints:
    """What the benchmark (root namespace) uses to reach one region."""

    url: str
    redis: str
    relay_metrics: str


@dataclass
class WanPlatform:
    net: WanNet
    state_dir: Path
    delay_ms: float
    config_file: Path | None = None
    ready_timeout: float = 60.0
    processes: list[ManagedProcess] = field(default_factory=list)

    @property
    def home(self) -> str:
        return self.net.regions[0].region

    @property
    def kafka_public(self) -> str:
        return f"{self.net.of(self.home).public}:{BROKER_PORT}"

    def endpoints(self) -> dict[str, RegionEndpoints]:
        return {
            r.region: RegionEndpoints(
                url=f"http://{r.link}:{http_port(i)}",
                redis=f"redis://{r.link}:{REDIS_PORT}/0",
                relay_metrics=f"http://{r.link}:{relay_port(i)}/metrics",
            )
            for i, r in enumerate(self.net.regions)
        }

    def describe(self) -> str:
        home = self.net.of(self.home)
        lines = [
            self.net.describe(),
            f"  broker in {self.home}: listens 0.0.0.0:{BROKER_PORT}, "
            f"advertises {self.kafka_public}",
            f"  region i: redis :{REDIS_PORT}, regional_cache :{HTTP_PORT}+i, "
            f"relay :{RELAY_PORT}+i; services use public addresses only",
            f"  delay proxies ({self.delay_ms:g} ms one way, each direction) in every region "
            f"for the other regions' public HTTP address and, outside {self.home}, "
            f"for {home.public}:{BROKER_PORT}",
        ]
        return "\n".join(lines)

    # ---- start / stop ----

    def _in_ns(self, region: str, proc: ManagedProcess) -> ManagedProcess:
        proc.argv = self.net.exec_argv(region, proc.argv)
        return proc

    def _launch(self, proc: ManagedProcess) -> ManagedProcess:
        self.processes.append(proc)
        return proc.start()

    def _wait_ready(
        self, proc: ManagedProcess, ready: Callable[[], bool], what: str, deadline: float
    ) -> None:
        try:
            wait_until(
                ready,
                timeout=max(1.0, deadline - time.monotonic()),
                what=what,
                alive=proc.alive,
            )
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(
                f"{exc}\n--- last lines of {proc.log_path} ---\n{proc.log_tail(30)}"
            ) from None

    def start(self) -> None:
        """Start everything in dependency order; raises (after logging) when a piece fails."""
        deadline = time.monotonic() + self.ready_timeout
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        regions = [r.region for r in self.net.regions]
        config_path = self.state_dir / "platform.toml"
        write_config(effective_config(self.config_file, regions), config_path)
        home = self.net.of(self.home)

        broker = broker_process(BROKER_PORT, logs)
        broker.argv = [
            broker.argv[0],
            "broker",
            "--listener-url",
            f"tcp://0.0.0.0:{BROKER_PORT}",
            "--advertised-listener-url",
            f"tcp://{self.kafka_public}",
        ]
        self._launch(self._in_ns(self.home, broker))
        redises: list[tuple[ManagedProcess, str]] = []
        for r in self.net.regions:
            redis = redis_process(
                REDIS_PORT,
                self.state_dir / "redis" / r.region,
                name=f"redis-{r.region}",
                persistent=True,
                # later options win: reachable on the link address, inside a private namespace
                extra=["--bind", "0.0.0.0", "--protected-mode", "no"],
            )
            self._launch(self._in_ns(r.region, redis))
            redises.append((redis, r.link))
        proxies: list[tuple[ManagedProcess, Path]] = []
        for r in self.net.regions:
            routes = [
                f"{other.public}:{http_port(j)}={other.link}:{http_port(j)}"
                for j, other in enumerate(self.net.regions)
                if other.region != r.region
            ]
            if r.region != self.home:
                routes.append(f"{home.public}:{BROKER_PORT}={home.link}:{BROKER_PORT}")
            ready_file = self.state_dir / f"proxy-{r.region}.ready"
            ready_file.unlink(missing_ok=True)
            argv = [
                sys.executable,
                "-m",
                "services.cli.delayproxy",
                "--delay-ms",
                f"{self.delay_ms:g}",
            ]
            for route in routes:
                argv += ["--route", route]
            argv += ["--ready-file", str(ready_file)]
            proc = ManagedProcess(f"proxy-{r.region}", argv, logs / f"proxy-{r.region}.log")
            self._launch(self._in_ns(r.region, proc))
            proxies.append((proc, ready_file))

        self._wait_ready(
            broker,
            functools.partial(port_open, home.link, BROKER_PORT),
            "broker",
            deadline,
        )
        for redis_proc, link in redises:
            self._wait_ready(
                redis_proc,
                functools.partial(port_open, link, REDIS_PORT),
                redis_proc.name,
                deadline,
            )
        for proc, ready_file in proxies:
            self._wait_ready(proc, ready_file.exists, proc.name, deadline)

        # topics before any consumer, from a namespace that reaches the advertised address
        topics = subprocess.run(
            self.net.exec_argv(
                self.home, [sys.executable, "-m", "bench.wan.topics", self.kafka_public]
            ),
            capture_output=True,
            text=True,
            timeout=max(5.0, deadline - time.monotonic()),
            check=False,
        )
        if topics.returncode != 0:
            raise RuntimeError(f"could not create the topics: {topics.stderr[-2000:]}")

        urls = {
            r.region: f"http://{r.public}:{http_port(i)}" for i, r in enumerate(self.net.regions)
        }

        caches: list[tuple[ManagedProcess, str]] = []
        for i, r in enumerate(self.net.regions):
            env = {
                "MRCACHE_REGION": r.region,
                "MRCACHE_REDIS__URL": f"redis://127.0.0.1:{REDIS_PORT}/0",
                "MRCACHE_KAFKA__BOOTSTRAP": self.kafka_public,
                "MRCACHE_CONFIG": str(config_path),
                "MRCACHE_LOG_FORMAT": "text",
                "MRCACHE_HOST": "0.0.0.0",
                # a private test network of our own namespaces: no API keys needed
                "MRCACHE_ALLOW_OPEN": "true",
                "MRCACHE_PORT": str(http_port(i)),
                "MRCACHE_REGION_URLS": json.dumps(urls),
            }
            proc = service_process(
                "services.regional_cache", f"regional_cache-{r.region}", env, logs
            )
            self._launch(self._in_ns(r.region, proc))
            caches.append((proc, f"http://{r.link}:{http_port(i)}/readyz"))
        for proc, url in caches:
            self._wait_ready(proc, functools.partial(_http_ok, url), proc.name, deadline)

        relays: list[tuple[ManagedProcess, str]] = []
        for i, r in enumerate(self.net.regions):
            env = {
                "MRCACHE_REGION": r.region,
                "MRCACHE_REDIS__URL": f"redis://127.0.0.1:{REDIS_PORT}/0",
                "MRCACHE_KAFKA__BOOTSTRAP": self.kafka_public,
                "MRCACHE_CONFIG": str(config_path),
                "MRCACHE_LOG_FORMAT": "text",
                "MRCACHE_HOST": "0.0.0.0",
                "MRCACHE_PORT": str(relay_port(i)),
            }
            proc = service_process(
                "services.invalidation_relay", f"invalidation_relay-{r.region}", env, logs
            )
            self._launch(self._in_ns(r.region, proc))
            relays.append((proc, f"http://{r.link}:{relay_port(i)}/readyz"))
        for proc, url in relays:
            self._wait_ready(proc, functools.partial(_http_ok, url), proc.name, deadline)

    def stop(self) -> None:
        """SIGTERM a tier at a time, the last started first; never raises.

        Relays, then caches, then proxies, then Redis and the broker: a relay leaves
        its consumer group through its proxy while the broker is still there.
        """
        tiers: dict[int, list[ManagedProcess]] = {}
        for proc in self.processes:
            tiers.setdefault(self._tier(proc.name), []).append(proc)
        for tier in sorted(tiers, reverse=True):
            for proc in tiers[tier]:
                if proc.alive() and proc.popen is not None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.popen.terminate()
            for proc in tiers[tier]:
                with contextlib.suppress(Exception):
                    proc.stop(grace=20.0)
        self.processes.clear()

    @staticmethod
    def _tier(name: str) -> int:
        for tier, prefix in enumerate(("broker", "redis", "proxy", "regional_cache")):
            if name.startswith(prefix):
                return tier
        return 4  # invalidation_relay


def _http_ok(url: str) -> bool:
    try:
        with httpx.Client(trust_env=False, timeout=1.0) as client:
            return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False
