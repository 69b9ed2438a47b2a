"""Settings of the reconciler (one per platform; environment ``MRCACHE_*``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from libs.common.service import ServiceSettings


class ReconcilerSettings(ServiceSettings):
    """Example: ``MRCACHE_REGION_REDIS='{"us-east": "redis://...", "eu-west": "redis://..."}'``."""

    # where the reconciler runs; it reads every region's Redis
    region: str = "us-east"
    port: Annotated[int, Field(ge=0, le=65535)] = 9200
    region_redis: dict[str, str] = Field(default_factory=dict)
    # overrides [reconciler] interval of the config file when set
    interval: Annotated[float, Field(gt=0)] | None = None
    # every change on the event topic is checked in every region this many seconds after
    # it was published (more than the relays' usual lag), and repaired where missing
    recent_checks: bool = True
    recent_delay: Annotated[float, Field(gt=0, le=3600)] = 0.5
    # the first pass and every n-th after it also SCAN the keyspace for digests missing
    # from the registries (see reconcile.py)
    full_scan_every: Annotated[int, Field(ge=1)] = 10
    # leaves compared key by key per batch, and the pause between batches (time slicing)
    batch: Annotated[int, Field(ge=1, le=10_000)] = 256
    pause: Annotated[float, Field(ge=0)] = 0.001
