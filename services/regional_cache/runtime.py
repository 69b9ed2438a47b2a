"""What a running regional_cache holds: its store, publisher, config and metrics."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from libs.common.breaker import BreakerSettings
from libs.common.config import NamespaceConfig, PlatformConfig
from libs.common.homes import home_finder, home_region
from libs.common.hotkeys import HotKeys
from libs.common.metrics import Metrics
from libs.common.naming import jittered_ttl
from libs.common.origin import OriginClient
from libs.common.publisher import EventPublisher
from libs.common.redisclient import RedisClient, make_redis
from libs.common.store import RegionStore
from services.regional_cache.fill import Filler
from services.regional_cache.hotranking import HotRanking
from services.regional_cache.nearcache import NearCache
from services.regional_cache.pusher import EventPusher
from services.regional_cache.regions import RegionClient
from services.regional_cache.settings import RegionalCacheSettings
from services.regional_cache.stamps import Stamper

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: RegionalCacheSettings
    platform: PlatformConfig
    redis: RedisClient
    store: RegionStore
    publisher: EventPublisher
    metrics: Metrics
    regions: RegionClient
    filler: Filler
    origins: OriginClient
    hotkeys: HotKeys
    near: NearCache | None
    ranking: HotRanking
    stamper: Stamper
    pusher: EventPusher | None = None
    eviction_policy: str | None = None
    maxmemory: int | None = None
    _ns_cache: dict[str, NamespaceConfig] = field(default_factory=dict)

    @property
    def region(self) -> str:
        return self.settings.region

    def __post_init__(self) -> None:
        # labelled children looked up once: labels() on every read shows in profiles
        self.hits = self.metrics.cache_results.labels(self.region, "hit")
        self.misses = self.metrics.cache_results.labels(self.region, "miss")
        self.stales = self.metrics.cache_results.labels(self.region, "stale")

    @classmethod
    def build(cls, settings: RegionalCacheSettings) -> Runtime:
        platform = settings.platform()
        redis = make_redis(settings.redis)
        metrics = Metrics()
        policy, maxmemory = settings.effective_eviction(platform)
        store = RegionStore(redis, tombstone_ttl=settings.tombstone_ttl)
        token = settings.internal_token
        regions = RegionClient(
            settings.region,
            settings.urls(platform),
            timeout=settings.forward_timeout,
            internal_token=token.get_secret_value() if token else None,
        )
        origins = OriginClient(
            metrics,
            timeout=settings.origin_timeout,
            max_concurrency=settings.origin_max_concurrency,
            retries=settings.origin_retries,
            max_value_bytes=settings.max_value_bytes,
            breaker=BreakerSettings(
                failure_rate=settings.origin_breaker_failure_rate,
                min_requests=settings.origin_breaker_min_requests,
                open_seconds=settings.origin_breaker_open_seconds,
            ),
        )
        hotkeys = HotKeys(
            threshold=settings.hot_key_threshold, sample_every=settings.hot_key_sample_every
        )

        home = home_finder(platform)

        def namespace_home(ns: str) -> str:
            return home(ns, None)

        stamper = Stamper(settings.region, store, regions, namespace_home)
        pusher = (
            EventPusher(regions, platform.platform.regions, metrics, region=settings.region)
            if platform.platform.push_events
            else None
        )
        near = (
            NearCache(
                redis,
                metrics,
                settings.region,
                staleness_ms=settings.near_cache_ms,
                max_entries=settings.near_cache_max_entries,
                max_value_bytes=settings.near_cache_max_value_bytes,
            )
            if settings.near_cache
            else None
        )
        return cls(
            settings=settings,
            platform=platform,
            redis=redis,
            store=store,
            hotkeys=hotkeys,
            near=near,
            ranking=HotRanking(
                redis, hotkeys, metrics, settings.region, interval=settings.hot_ranking_interval
            ),
            regions=regions,
            stamper=stamper,
            filler=Filler(
                settings.region,
                store,
                regions,
                origins,
                stamper,
                lease_ttl=origins.max_fetch_seconds + 1.0,
                max_ttl=settings.max_ttl,
                drill_delay=settings.drill_fill_delay,
            ),
            origins=origins,
            publisher=EventPublisher(
                settings.kafka,
                redis,
                region=settings.region,
                metrics=metrics,
                fanout=pusher.push if pusher is not None else None,
            ),
            pusher=pusher,
            metrics=metrics,
            eviction_policy=policy,
            maxmemory=maxmemory,
        )

    async def start(self) -> None:
        try:
            await self.store.apply_eviction(self.eviction_policy, self.maxmemory)
        except Exception as exc:  # Redis down at startup: /readyz reports it
            log.warning("could not apply eviction settings yet: %r", exc)
        await self.regions.start()
        await self.origins.start()
        await self.publisher.start()
        if self.pusher is not None:
            await self.pusher.start()
        await self.ranking.start()

    async def stop(self) -> None:
        await self.ranking.stop()
        if self.near is not None:
            await self.near.stop()
        await self.publisher.stop()
        if self.pusher is not None:
            await self.pusher.stop()
        await self.filler.stop()
        await self.origins.stop()
        await self.regions.stop()
        await self.redis.aclose()

    def namespace(self, ns: str) -> NamespaceConfig:
        cfg = self._ns_cache.get(ns)
        if cfg is None:
            cfg = self.platform.namespace(ns)
            if len(self._ns_cache) < 10_000:
                self._ns_cache[ns] = cfg
        return cfg

    def home_of(self, ns: str, key: str | None) -> str:
        return home_region(self.namespace(ns), self.platform.platform.regions, ns, key)

    def effective_ttl(self, ns: str, requested: float | None) -> float:
        """The TTL stored: requested or default, spread by the namespace's jitter."""
        cfg = self.namespace(ns)
        ttl = cfg.default_ttl if requested is None else requested
        return jittered_ttl(ttl, cfg.ttl_jitter, self.settings.max_ttl)
