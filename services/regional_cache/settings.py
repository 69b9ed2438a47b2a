"""Settings of one regional_cache process (environment ``MRCACHE_*``, nested ``__``)."""

from __future__ import annotations

import logging
from typing import Annotated

from pydantic import Field, SecretStr

from libs.common.config import PlatformConfig
from libs.common.service import ServiceSettings
from libs.common.settings import EvictionSettings, parse_memory


class RegionalCacheSettings(ServiceSettings):
    """Example: ``MRCACHE_REGION=eu-west MRCACHE_REDIS__URL=redis://h:6379/0``."""

    eviction: EvictionSettings = Field(default_factory=EvictionSettings)
    # URLs of every region's regional_cache, for /v1/info, forwarding and remote fills.
    region_urls: dict[str, str] = Field(default_factory=dict)
    # seconds a forwarded write or a remote fill may take before 503 home_unavailable
    forward_timeout: Annotated[float, Field(gt=0)] = 5.0
    # shared by the regions to authenticate region-to-region requests (remote fills,
    # forwarded writes); required when API keys are configured and there are regions
    internal_token: SecretStr | None = None
    # without API keys the service binds loopback only; this opts out (private networks)
    allow_open: bool = False
    # origins (read-through sources of namespaces that name one)
    origin_timeout: Annotated[float, Field(gt=0)] = 2.0
    origin_retries: Annotated[int, Field(ge=0, le=5)] = 2
    origin_max_concurrency: Annotated[int, Field(ge=1)] = 64
    # the per-origin circuit breaker opens at this failure rate over 10 s (with at least
    # min_requests) and probes again after open_seconds
    origin_breaker_failure_rate: Annotated[float, Field(gt=0, le=1)] = 0.5
    origin_breaker_min_requests: Annotated[int, Field(ge=1)] = 10
    origin_breaker_open_seconds: Annotated[float, Field(gt=0)] = 5.0
    # hot keys: a read in sample_every is counted; a key read this often per second by
    # one process is hot, and (near_cache) served from a copy in the process, dropped by
    # Redis's invalidation messages and never older than near_cache_ms
    hot_key_threshold: Annotated[float, Field(gt=0)] = 200.0
    hot_key_sample_every: Annotated[int, Field(ge=1, le=1024)] = 8
    near_cache: bool = True
    near_cache_ms: Annotated[float, Field(gt=0, le=60_000)] = 50.0
    near_cache_max_entries: Annotated[int, Field(ge=1)] = 1000
    near_cache_max_value_bytes: Annotated[int, Field(ge=1)] = 64 * 1024
    # misses one batchGet fills at most (each a request to the key's home region or the
    # origin); misses past it come back with "fetched": false, not fetched
    batch_fill_limit: Annotated[int, Field(ge=0, le=1000)] = 100
    # seconds between additions of this process's hot keys to the region's ranking
    # (what `mrcache warm` copies from)
    hot_ranking_interval: Annotated[float, Field(gt=0)] = 5.0
    # fault drill: seconds a remote fill waits between fetching and installing (tests use it
    # to force the stale-set race)
    drill_fill_delay: Annotated[float, Field(ge=0)] = 0.0

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

    def bind_host(self, platform: PlatformConfig) -> str:
        """Where to listen: loopback only while no API keys are configured."""
        if platform.auth.keys or self.allow_open or self.host in _LOOPBACK:
            return self.host
        log.warning(
            "no API keys configured: serving on 127.0.0.1 only, not %s "
            "(configure [[auth.keys]], or set MRCACHE_ALLOW_OPEN=true on a private network)",
            self.host,
        )
        return "127.0.0.1"


_LOOPBACK = ("127.0.0.1", "::1", "localhost")
log = logging.getLogger(__name__)
