"""Settings of one invalidation_relay process (environment ``MRCACHE_*``, nested ``__``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from libs.common.config import PlatformConfig, load_platform_config
from libs.common.errors import ConfigError
from libs.common.naming import check_region
from libs.common.settings import KafkaSettings, RedisSettings


class RelaySettings(BaseSettings):
    """Example: ``MRCACHE_REGION=eu-west MRCACHE_REDIS__URL=redis://h:6379/0``."""

    model_config = SettingsConfigDict(
        env_prefix="MRCACHE_", env_nested_delimiter="__", extra="forbid"
    )

    region: str = "us-east"
    # health, readiness and metrics of the relay itself
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9100
    config: Path | None = None
    redis: RedisSettings = Field(default_factory=RedisSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    tombstone_ttl: Annotated[float, Field(gt=0)] = 24 * 3600.0
    max_batch: Annotated[int, Field(ge=1, le=10_000)] = 500
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        return check_region(value)

    def platform(self) -> PlatformConfig:
        platform = load_platform_config(self.config)
        if self.config is not None and self.region not in platform.platform.regions:
            raise ConfigError(
                f"region {self.region!r} is not in platform.regions {platform.platform.regions}"
            )
        return platform

    @property
    def group_id(self) -> str:
        """One consumer group per region: every region sees every event once."""
        return f"mrcache-relay-{self.region}"
