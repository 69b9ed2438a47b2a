"""Settings of the consistency meter (one per platform; environment ``MRCACHE_*``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator

from libs.common.config import PlatformConfig
from libs.common.errors import ConfigError
from libs.common.naming import check_region
from libs.common.service import ServiceSettings
from services.meter.meter import DEFAULT_DELAYS


class MeterSettings(ServiceSettings):
    """Example: ``MRCACHE_REGION_URLS='{"us-east": "http://...", "eu-west": "http://..."}'``,
    ``MRCACHE_DELAYS='[1, 5, 60]'``, ``MRCACHE_SAMPLE_RATE=0.1``.
    """

    # where the meter runs; it reads every region over HTTP
    region: str = "us-east"
    port: Annotated[int, Field(ge=0, le=65535)] = 9300
    # every region's regional_cache URL (over [regions.<name>] url of the config file)
    region_urls: dict[str, str] = Field(default_factory=dict)
    # fraction of key events checked, chosen by a hash of the event id (reproducible)
    sample_rate: Annotated[float, Field(ge=0, le=1)] = 0.1
    # fraction of namespace and tag invalidations checked (each probes up to 8 keys)
    invalidation_sample_rate: Annotated[float, Field(ge=0, le=1)] = 1.0
    # checks a second at most, whatever the write rate (0 = no limit): a long run's cost
    max_check_rate: Annotated[float, Field(ge=0)] = 0.0
    # seconds after each sampled write at which every region is read
    delays: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1)] = Field(
        default_factory=lambda: list(DEFAULT_DELAYS)
    )
    # probe requests in flight per region (each asks about up to 200 keys), and the
    # timeout of one
    concurrency: Annotated[int, Field(ge=1, le=1024)] = 8
    timeout: Annotated[float, Field(gt=0)] = 2.0
    # a check that cannot start within this of its time is skipped (counted as late)
    max_lateness: Annotated[float, Field(gt=0)] = 0.5
    # the rolling window of mrcache_meter_freshness_ratio: this long, at most this many
    window_seconds: Annotated[float, Field(gt=0)] = 600.0
    window_checks: Annotated[int, Field(ge=1)] = 10_000
    # checks waiting for their time at most; more are dropped (counted as overflow)
    max_pending: Annotated[int, Field(ge=1)] = 100_000
    # the regions' internal token: the probe is a region-to-region route
    internal_token: SecretStr | None = None
    # sent as "Authorization: Bearer <key>" too, for a proxy in front of the regions
    api_key: SecretStr | None = None

    @field_validator("region_urls")
    @classmethod
    def _regions(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            check_region(name)
        return value

    def urls(self, platform: PlatformConfig) -> dict[str, str]:
        """Every region to read: ``region_urls`` over ``[regions.<name>] url`` of the config."""
        found = {
            name: url
            for name in platform.platform.regions
            if (url := platform.region(name).url) is not None
        }
        found.update(self.region_urls)
        if self.config is not None:
            missing = [name for name in platform.platform.regions if name not in found]
            if missing:
                raise ConfigError(f"MRCACHE_REGION_URLS has no URL for {missing}")
        if not found:
            raise ConfigError("MRCACHE_REGION_URLS is empty: the meter has no region to read")
        return found
