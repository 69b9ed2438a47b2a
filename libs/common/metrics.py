"""Prometheus metrics of api.md, each set in its own registry (no global state).

Every process builds one :class:`Metrics` and passes it to what it starts, so
two apps in one test process never share counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Request latencies sit between 100 µs (hit) and seconds (a forward or an origin).
_LATENCY_BUCKETS = (
    0.0002,
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_LAG_BUCKETS = (
    0.005,
    0.01,
    0.015,
    0.02,
    0.025,
    0.035,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.25,
    0.35,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "mrcache_requests",
            "HTTP requests by route and status.",
            ["region", "route", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "mrcache_request_seconds",
            "HTTP request latency.",
            ["region", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.cache_results = Counter(
            "mrcache_cache_results", "Reads by result.", ["region", "result"], registry=r
        )
        self.invalidations_published = Counter(
            "mrcache_invalidations_published",
            "Events accepted by Kafka.",
            ["region", "type"],
            registry=r,
        )
        self.push_events = Counter(
            "mrcache_push_events",
            "Events pushed to another region directly (push_events), by outcome: sent, "
            "failed, dropped (queue full), skipped (the region failed a push just before).",
            ["region", "peer", "outcome"],
            registry=r,
        )
        self.pushed_events = Counter(
            "mrcache_pushed_events",
            "Events other regions pushed here, by outcome: applied, stale, invalid.",
            ["region", "outcome"],
            registry=r,
        )
        self.invalidations_applied = Counter(
            "mrcache_invalidations_applied",
            "Events applied to a region's Redis.",
            ["region", "type"],
            registry=r,
        )
        self.invalidation_lag = Histogram(
            "mrcache_invalidation_lag_seconds",
            "Publish to applied, per applying region.",
            ["region"],
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.relay_events = Counter(
            "mrcache_relay_events",
            "Events a relay consumed, by outcome.",
            ["region", "outcome"],
            registry=r,
        )
        self.relay_backlog = Gauge(
            "mrcache_relay_backlog",
            "Events on the topic this relay has not consumed yet.",
            ["region"],
            registry=r,
        )
        self.invalid_events = Counter(
            "mrcache_invalid_events", "Malformed events sent to DLQ.", ["region"], registry=r
        )
        self.reconciler_repairs = Counter(
            "mrcache_reconciler_repairs", "Stale copies repaired.", ["region"], registry=r
        )
        self.reconciler_recent_checks = Counter(
            "mrcache_reconciler_recent_checks",
            "Recent changes the reconciler checked in every region shortly after publication.",
            registry=r,
        )
        self.reconciler_recent_repairs = Counter(
            "mrcache_reconciler_recent_repairs",
            "Repairs made by the recent-change checks (also in mrcache_reconciler_repairs).",
            ["region"],
            registry=r,
        )
        self.reconciler_recent_deferred = Counter(
            "mrcache_reconciler_recent_deferred",
            "Recent changes found behind past the recent-change repair cap, looked at again "
            "later instead of repaired (a relay catching up, usually).",
            registry=r,
        )
        self.reconciler_recent_shed = Counter(
            "mrcache_reconciler_recent_shed",
            "Recent changes the recent-change checks gave up on (queue full, or still behind "
            "after every look): left to the next full pass.",
            registry=r,
        )
        self.reconciler_leaves = Counter(
            "mrcache_reconciler_buckets_compared", "Digest leaves compared key by key.", registry=r
        )
        self.reconciler_keys = Counter(
            "mrcache_reconciler_keys_compared", "Keys compared inside differing leaves.", registry=r
        )
        self.reconciler_seconds = Histogram(
            "mrcache_reconciler_duration_seconds",
            "Duration of one reconcile pass.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.reconciler_last_success = Gauge(
            "mrcache_reconciler_last_success_timestamp_seconds",
            "When the last complete pass ended (epoch seconds).",
            registry=r,
        )
        self.reconciler_skipped = Counter(
            "mrcache_reconciler_regions_skipped",
            "Passes that skipped an unreachable region.",
            ["region"],
            registry=r,
        )
        self.origin_requests = Counter(
            "mrcache_origin_requests", "Origin fetches by outcome.", ["ns", "outcome"], registry=r
        )
        self.outbox_depth = Gauge(
            "mrcache_outbox_depth", "Events waiting in the outbox.", ["region"], registry=r
        )
        self.outbox_events = Counter(
            "mrcache_outbox_events", "Events queued to the outbox.", ["region"], registry=r
        )
        self.publish_failures = Counter(
            "mrcache_publish_failures",
            "Direct publishes that failed over to the outbox.",
            ["region"],
            registry=r,
        )
        # the consistency meter (services/meter): reads each sampled write in every
        # region T seconds after it; delay is a label such as "1s"
        self.meter_checks = Counter(
            "mrcache_meter_checks",
            "Meter probes after a sampled invalidation, by region, delay and result "
            "(fresh|stale|not_cached|error; the keys' home regions are left out).",
            ["region", "delay", "result"],
            registry=r,
        )
        self.meter_freshness = Gauge(
            "mrcache_meter_freshness_ratio",
            "Fraction of fresh reads among fresh and stale over the meter's rolling window "
            "(NaN when the window holds none).",
            ["region", "delay"],
            registry=r,
        )
        self.meter_error_ratio = Gauge(
            "mrcache_meter_error_ratio",
            "Fraction of the meter's probes in its rolling window that got no usable answer.",
            ["region", "delay"],
            registry=r,
        )
        self.meter_stale_bound = Gauge(
            "mrcache_meter_stale_upper_bound",
            "Upper 95% confidence limit (Clopper-Pearson) of the stale rate since the start.",
            ["region", "delay"],
            registry=r,
        )
        self.meter_sampled = Counter(
            "mrcache_meter_sampled_events",
            "Invalidations the meter sampled, by kind (key|delete|namespace|tag|debezium).",
            ["kind"],
            registry=r,
        )
        self.meter_skipped = Counter(
            "mrcache_meter_checks_skipped",
            "Checks not run, by reason: late (started after their time), overflow or shed.",
            ["delay", "reason"],
            registry=r,
        )
        # origin circuit breakers (libs/common/breaker.py), one per scheme://host:port
        self.origin_breaker_state = Gauge(
            "mrcache_origin_breaker_state",
            "Origin circuit breaker state: 0 closed, 1 half-open, 2 open.",
            ["origin"],
            registry=r,
        )
        self.origin_breaker_transitions = Counter(
            "mrcache_origin_breaker_transitions",
            "Origin circuit breaker transitions, by the state entered.",
            ["origin", "to"],
            registry=r,
        )
        # hot keys and the per-process near cache (services/regional_cache/nearcache.py)
        self.hot_keys = Gauge(
            "mrcache_hot_keys",
            "Keys read at or above the hot-key threshold in the last window, this process.",
            ["region"],
            registry=r,
        )
        self.near_cache_results = Counter(
            "mrcache_near_cache_results",
            "Near-cache lookups of hot keys: hit, miss (no copy), expired (past the bound).",
            ["region", "result"],
            registry=r,
        )
        self.near_cache_entries = Gauge(
            "mrcache_near_cache_entries", "Copies held by the near cache.", ["region"], registry=r
        )
        self.near_cache_invalidations = Counter(
            "mrcache_near_cache_invalidations",
            "Near-cache copies dropped (invalidated by Redis, expired, or evicted).",
            ["region"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
