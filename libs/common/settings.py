"""Settings pieces shared by every service, composed into one class per service.

Services build their own ``BaseSettings`` from these pieces and receive the
instance as an argument (``create_app(settings)``); nothing here is read at
import time. Secrets are ``SecretStr`` so reprs and logs never show them.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator

_MEMORY_RE = re.compile(r"^\s*(\d+)\s*(b|kb|mb|gb|k|m|g)?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
}


def parse_memory(text: str) -> int:
    """``"256mb"`` → bytes, with Redis's units (k/kb/m/mb/g/gb are powers of 1024)."""
    match = _MEMORY_RE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a memory size like 64mb or 1gb")
    return int(match.group(1)) * _UNITS[(match.group(2) or "").lower()]


def _memory_size(value: str) -> str:
    parse_memory(value)
    return value


# a Redis memory size such as "512mb", checked when settings or config load
MemorySize = Annotated[str, AfterValidator(_memory_size)]


class RedisSettings(BaseModel):
    """A region's Redis: ``redis://`` or ``rediss://`` (TLS) URL; with ``cluster`` the URL
    names one node of a Redis Cluster and the client discovers the others."""

    model_config = ConfigDict(extra="forbid")

    url: str = "redis://127.0.0.1:6379/0"
    cluster: bool = False
    password: SecretStr | None = None
    socket_timeout: Annotated[float, Field(gt=0)] = 2.0
    max_connections: Annotated[int, Field(ge=1)] = 512
    # seconds a command waits for a free connection when all max_connections are in use
    pool_timeout: Annotated[float, Field(gt=0)] = 5.0

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis url must start with redis://, rediss:// or unix://")
        return value


class KafkaSettings(BaseModel):
    """The broker every region publishes to and consumes from."""

    model_config = ConfigDict(extra="forbid")

    bootstrap: str = "127.0.0.1:9092"
    topic: str = "mrcache.invalidations"
    dlq_topic: str = "mrcache.invalidations.dlq"
    # Tansu (the embedded broker) rejects InitProducerId; Apache Kafka wants it on.
    enable_idempotence: bool = False
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    # How long a write waits for Kafka before its event goes to the outbox instead.
    publish_timeout: Annotated[float, Field(gt=0)] = 2.0
    request_timeout_ms: Annotated[int, Field(ge=1000)] = 10_000
    linger_ms: Annotated[int, Field(ge=0)] = 0
    fetch_max_wait_ms: Annotated[int, Field(ge=1)] = 20
    # a relay that dies is replaced after this; the embedded broker never sees the first
    # member of a group leave (generation 0), so shorter also means faster restarts
    session_timeout_ms: Annotated[int, Field(ge=1000)] = 6000
    heartbeat_interval_ms: Annotated[int, Field(ge=100)] = 2000


class EvictionSettings(BaseModel):
    """Applied to the region's Redis at startup: ``volatile-<policy>`` and ``maxmemory``."""

    model_config = ConfigDict(extra="forbid")

    policy: Literal["lru", "lfu"] | None = None
    maxmemory: MemorySize | None = None
