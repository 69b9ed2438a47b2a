"""Real processes for tests: redis-server, the broker and regional_cache services.

Tests poll with deadlines (:func:`eventually`) instead of sleeping, and every
process started here is stopped by the fixture or factory that started it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import redis
import redis.asyncio

from libs.common.processes import (
    ManagedProcess,
    broker_process,
    free_port,
    redis_process,
    service_process,
    wait_port,
    wait_until,
)
from libs.common.redisclient import RedisClient, make_redis
from libs.common.settings import RedisSettings

T = TypeVar("T")


@dataclass
class RedisServer:
    port: int
    proc: ManagedProcess | None
    cluster = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def settings(self) -> RedisSettings:
        return RedisSettings(url=self.url)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def async_client(self) -> RedisClient:
        return make_redis(self.settings())


@dataclass
class Broker:
    port: int
    proc: ManagedProcess | None
    workdir: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def restart(self) -> None:
        """Start a broker again on the same port (memory storage: topics start empty)."""
        assert self.proc is not None, "an external broker cannot be restarted by tests"
        self.proc.stop()
        self.proc = broker_process(self.port, self.workdir).start()
        wait_port(self.proc, self.port)


def start_redis(workdir: Path, *, extra: tuple[str, ...] = ()) -> RedisServer:
    port = free_port()
    proc = redis_process(port, workdir / f"redis-{port}", extra=extra).start()
    wait_port(proc, port)
    return RedisServer(port, proc)


def start_broker(workdir: Path) -> Broker:
    port = free_port()
    proc = broker_process(port, workdir).start()
    wait_port(proc, port)
    return Broker(port, proc, workdir)


@dataclass
class Service:
    region: str
    port: int
    proc: ManagedProcess
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0, **kwargs)  # type: ignore[arg-type]


def service_env(
    region: str,
    port: int,
    redis_url: str,
    bootstrap: str,
    *,
    redis_cluster: bool = False,
    **extra: str,
) -> dict[str, str]:
    return {
        "MRCACHE_REGION": region,
        "MRCACHE_PORT": str(port),
        "MRCACHE_REDIS__URL": redis_url,
        "MRCACHE_REDIS__CLUSTER": "true" if redis_cluster else "false",
        "MRCACHE_KAFKA__BOOTSTRAP": bootstrap,
        "MRCACHE_KAFKA__PUBLISH_TIMEOUT": "1.0",
        "MRCACHE_LOG_FORMAT": "text",
        **extra,
    }


def start_service(
    workdir: Path, env: dict[str, str], *, wait_ready: bool = True, timeout: float = 30.0
) -> Service:
    port = int(env["MRCACHE_PORT"])
    region = env["MRCACHE_REGION"]
    proc = service_process(
        "services.regional_cache", f"regional_cache-{region}-{port}", env, workdir
    ).start()
    service = Service(region, port, proc, env)
    try:
        if wait_ready:
            wait_until(
                lambda: _ready(service.url),
                timeout=timeout,
                what=f"regional_cache {region} /readyz",
                alive=proc.alive,
            )
        else:
            wait_port(proc, port, timeout)
    except (TimeoutError, RuntimeError) as exc:
        proc.stop()
        raise RuntimeError(f"{exc}\n--- service log ---\n{proc.log_tail()}") from None
    return service


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def running_service(workdir: Path, env: dict[str, str], **kwargs: object) -> Iterator[Service]:
    service = start_service(workdir, env, **kwargs)  # type: ignore[arg-type]
    try:
        yield service
    finally:
        service.proc.stop()


def eventually(
    check: Callable[[], T | None],
    *,
    timeout: float = 15.0,
    what: str = "condition",
    interval: float = 0.05,
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} did not happen within {timeout} s (last: {last!r})")


async def eventually_async(
    check: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = 15.0,
    what: str = "condition",
    interval: float = 0.05,
) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"{what} did not happen within {timeout} s (last: {last!r})")
