"""invalidation_relay processes and raw topic access for tests.

Each test gets its own event and dead-letter topics (:func:`own_topics`), so
relays of different tests sharing the session broker never see each other's
events. A relay's consumer group is ``mrcache-relay-<region>``: tests that
must not share a group with any other test use a region of their own
(:func:`own_region`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from libs.common import events
from libs.common.events import Event
from libs.common.kafka import ensure_topics, make_producer
from libs.common.processes import ManagedProcess, free_port, service_process, wait_until
from libs.common.settings import KafkaSettings


def own_region() -> str:
    return f"r{uuid.uuid4().hex[:10]}"


async def own_topics(bootstrap: str) -> KafkaSettings:
    """A fresh event topic and dead-letter topic on the broker, created up front."""
    suffix = uuid.uuid4().hex[:12]
    kafka = KafkaSettings(
        bootstrap=bootstrap,
        topic=f"test.inv.{suffix}",
        dlq_topic=f"test.inv.{suffix}.dlq",
    )
    # an admin client that met the broker before it served (or behind a paused proxy)
    # can wait forever: bounded attempts instead of a hang until pytest's timeout
    for attempt in range(4):
        try:
            await asyncio.wait_for(ensure_topics(kafka), 15)
            return kafka
        except TimeoutError:
            if attempt == 3:
                raise
    return kafka


@dataclass
class RelayProcess:
    region: str
    port: int
    proc: ManagedProcess

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    async def until_ready(self, timeout: float = 60.0) -> None:
        """Poll /readyz without blocking the event loop (a publisher may be running)."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if not self.proc.alive():
                    raise RuntimeError(f"relay {self.region} exited:\n{self.proc.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.05)
        raise TimeoutError(
            f"relay {self.region} not ready after {timeout} s:\n{self.proc.log_tail()}"
        )

    async def info(self) -> dict[str, object]:
        async with httpx.AsyncClient(timeout=2.0) as client:
            body: dict[str, object] = (await client.get(f"{self.url}/v1/info")).json()
        return body

    async def applied(self) -> int:
        applied = (await self.info())["applied"]
        assert isinstance(applied, int)
        return applied

    async def metric(self, name: str, **labels: str) -> float:
        """One sample of its /metrics (0 when the series does not exist yet)."""
        async with httpx.AsyncClient(timeout=2.0) as client:
            text = (await client.get(f"{self.url}/metrics")).text
        return sample(text, name, **labels)

    def log(self) -> str:
        return self.proc.log_path.read_text(errors="replace")


def sample(text: str, name: str, **labels: str) -> float:
    """The value of ``name{labels}`` in a Prometheus text exposition; 0 when absent."""
    wanted = {f'{k}="{v}"' for k, v in labels.items()}
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        metric, _, rest = series.partition("{")
        if metric != name:
            continue
        if wanted <= set(rest.rstrip("}").split(",")):
            total += float(value)
    return total


def relay_env(
    region: str,
    port: int,
    redis_url: str,
    kafka: KafkaSettings,
    *,
    config: Path | None = None,
) -> dict[str, str]:
    env = {
        "MRCACHE_REGION": region,
        "MRCACHE_PORT": str(port),
        "MRCACHE_REDIS__URL": redis_url,
        "MRCACHE_KAFKA__BOOTSTRAP": kafka.bootstrap,
        "MRCACHE_KAFKA__TOPIC": kafka.topic,
        "MRCACHE_KAFKA__DLQ_TOPIC": kafka.dlq_topic,
        "MRCACHE_LOG_FORMAT": "text",
    }
    if config is not None:
        env["MRCACHE_CONFIG"] = str(config)
    return env


def start_relay(
    workdir: Path,
    region: str,
    redis_url: str,
    kafka: KafkaSettings,
    *,
    config: Path | None = None,
    wait_ready: bool = True,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
) -> RelayProcess:
    """Start a relay (``env`` on top of its usual settings); with ``wait_ready`` return
    once it holds partitions."""
    port = free_port()
    env = {**relay_env(region, port, redis_url, kafka, config=config), **(env or {})}
    name = f"relay-{region}-{port}"
    proc = service_process("services.invalidation_relay", name, env, workdir).start()
    relay = RelayProcess(region, port, proc)
    if wait_ready:
        try:
            wait_until(
                relay.ready, timeout=timeout, what=f"relay {region} /readyz", alive=proc.alive
            )
        except (TimeoutError, RuntimeError) as exc:
            proc.stop()
            raise RuntimeError(f"{exc}\n--- relay log ---\n{proc.log_tail()}") from None
    return relay


@contextmanager
def running_relay(
    workdir: Path, region: str, redis_url: str, kafka: KafkaSettings, **kwargs: object
) -> Iterator[RelayProcess]:
    relay = start_relay(workdir, region, redis_url, kafka, **kwargs)  # type: ignore[arg-type]
    try:
        yield relay
    finally:
        relay.proc.stop()


async def publish(
    kafka: KafkaSettings, messages: Iterable[tuple[bytes | None, bytes | None]]
) -> int:
    """Send ``(key, value)`` messages in order and wait for every ack; returns the count."""
    producer = make_producer(kafka)
    await producer.start()
    try:
        sent = 0
        futures = []
        for key, value in messages:
            futures.append(await producer.send(kafka.topic, value, key=key))
            sent += 1
        for future in futures:
            await future
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def publish_events(kafka: KafkaSettings, stream: Sequence[Event]) -> int:
    return await publish(kafka, ((e.kafka_key, events.encode(e)) for e in stream))
