"""Settings of one invalidation_relay process (environment ``MRCACHE_*``, nested ``__``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from libs.common.service import ServiceSettings


class RelaySettings(ServiceSettings):
    """Example: ``MRCACHE_REGION=eu-west MRCACHE_REDIS__URL=redis://h:6379/0``."""

    # health, readiness and metrics of the relay itself
    port: Annotated[int, Field(ge=0, le=65535)] = 9100
    max_batch: Annotated[int, Field(ge=1, le=10_000)] = 500

    @property
    def group_id(self) -> str:
        """One consumer group per region: every region sees every event once."""
        return f"mrcache-relay-{self.region}"
