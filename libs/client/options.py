"""Client settings shared by the async and the sync client."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Timeouts, probing, backoff and memory sizes; every field has a usable default."""

    timeout: float = 5.0  # seconds a request may wait to send, or for each read of its answer
    connect_timeout: float = 1.0  # seconds to connect: an unreachable region fails over this fast
    probe_interval: float = 5.0  # seconds between background GET /healthz rounds
    probe_timeout: float = 1.0
    backoff_initial: float = 0.25  # first backoff of a failed region, doubling per failure
    backoff_max: float = 30.0
    backoff_jitter: float = 0.5  # each backoff is stretched by up to this fraction, at random
    latency_smoothing: float = 0.3  # EWMA weight of the newest latency sample
    namespace_ttl: float = 60.0  # seconds a namespace's home region is remembered
    remembered_writes: int = 100_000  # keys whose written version is kept for read-your-writes
    trust_env: bool = True  # let httpx read proxy settings from the environment

    def __post_init__(self) -> None:
        positive = {
            "timeout": self.timeout,
            "connect_timeout": self.connect_timeout,
            "probe_interval": self.probe_interval,
            "probe_timeout": self.probe_timeout,
            "backoff_initial": self.backoff_initial,
            "backoff_max": self.backoff_max,
            "remembered_writes": self.remembered_writes,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"ClientOptions.{name} must be positive, got {value}")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("ClientOptions.backoff_max must be at least backoff_initial")
        if not 0 <= self.backoff_jitter <= 1:
            raise ValueError("ClientOptions.backoff_jitter must be within [0, 1]")
        if not 0 < self.latency_smoothing <= 1:
            raise ValueError("ClientOptions.latency_smoothing must be within (0, 1]")
        if self.namespace_ttl < 0:
            raise ValueError("ClientOptions.namespace_ttl must not be negative")
