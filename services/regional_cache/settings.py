"""Settings of one regional_cache process (environment ``MRCACHE_*``, nested ``__``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from libs.common.config import PlatformConfig, load_platform_config
from libs.common.naming import check_region
from libs.common.settings import EvictionSettings, KafkaSettings, RedisSettings, parse_memory


class RegionalCacheSettings(BaseSettings):
    """Example: ``MRCACHE_REGION=eu-west MRCACHE_REDIS__URL=redis://h:6379/0``."""

    model_config = SettingsConfigDict(
        env_prefix="MRCACHE_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    region: str = "us-east"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8100
    config: Path | None = None
    redis: RedisSettings = Field(default_factory=RedisSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    eviction: EvictionSettings = Field(default_factory=EvictionSettings)
    # URLs of every region's regional_cache, for /v1/info and (later) forwarding.
    region_urls: dict[str, str] = Field(default_factory=dict)
    max_value_bytes: Annotated[int, Field(ge=1)] = 1024 * 1024
    max_ttl: Annotated[float, Field(gt=0)] = 30 * 24 * 3600.0
    # A tombstone must outlive any in-flight fill and any event lag of its key.
    tombstone_ttl: Annotated[float, Field(gt=0)] = 24 * 3600.0
    # seconds a forwarded write or a remote fill may take before 503 home_unavailable
    forward_timeout: Annotated[float, Field(gt=0)] = 5.0
    # fault drill: seconds a remote fill waits between fetching and installing (tests use it
    # to force the stale-set race)
    drill_fill_delay: Annotated[float, Field(ge=0)] = 0.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        return check_region(value)

    def platform(self) -> PlatformConfig:
        """Load the platform config file and check this region is part of it."""
        platform = load_platform_config(self.config)
        if self.config is None and self.region not in platform.platform.regions:
            platform = platform.model_copy(
                update={"platform": platform.platform.model_copy(update={"regions": [self.region]})}
            )
        return platform

    def urls(self, platform: PlatformConfig) -> dict[str, str]:
        """Every region's URL: ``region_urls`` over ``[regions.<name>] url``."""
        found = {name: platform.region(name).url or "" for name in platform.platform.regions}
        found.update({k: v for k, v in self.region_urls.items() if k in found})
        return {name: url for name, url in found.items() if url}

    def effective_eviction(self, platform: PlatformConfig) -> tuple[str | None, int | None]:
        """Eviction policy and maxmemory bytes: these settings over ``[regions.<name>]``."""
        region = platform.region(self.region)
        policy = self.eviction.policy or region.eviction
        size = self.eviction.maxmemory or region.maxmemory
        return policy, (parse_memory(size) if size else None)
