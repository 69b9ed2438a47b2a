"""What the client returns: plain frozen dataclasses."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Item:
    """One cached value as a region served it."""

    value: bytes
    version: int
    content_type: str
    cache: str | None  # X-Cache: HIT, MISS (filled just now) or STALE
    region: str | None  # X-Cache-Region: the region that served it
    age: int | None  # seconds since the value was written

    def text(self, encoding: str = "utf-8") -> str:
        return self.value.decode(encoding)

    def json(self) -> Any:
        return json.loads(self.value)


@dataclass(frozen=True, slots=True)
class PutResult:
    """The home region's answer to a write."""

    ns: str
    key: str
    version: int
    home_region: str
    ttl: float  # effective TTL in seconds, after jitter
    expires_at: float  # epoch seconds
    forwarded_by: str | None = None  # X-Cache-Forwarded: set when a region had to forward


@dataclass(frozen=True, slots=True)
class NamespaceInvalidation:
    ns: str
    generation: int


@dataclass(frozen=True, slots=True)
class TagInvalidation:
    ns: str
    tag: str
    version: int


@dataclass(frozen=True, slots=True)
class Namespace:
    """A namespace's effective configuration (``GET /v1/ns/{ns}``)."""

    ns: str
    home_region: str  # a region name, or "hash" (each key's home by rendezvous hashing)
    configured: bool
    default_ttl: float
    propagation: str
    settings: Mapping[str, Any] = field(default_factory=dict)  # the whole answer


@dataclass(frozen=True, slots=True)
class Info:
    """``GET /v1/info`` of one region."""

    region: str
    regions: Mapping[str, str | None]  # every region's URL as the platform knows it
    version: str | None
    settings: Mapping[str, Any] = field(default_factory=dict)  # the whole answer


@dataclass(frozen=True, slots=True)
class RegionStatus:
    """The client's view of one region."""

    name: str
    url: str
    healthy: bool
    latency: float | None  # smoothed seconds; None until measured
    failures: int  # consecutive failures
    retry_in: float  # seconds until a region in backoff is tried again (0 when healthy)
    last_error: str | None
