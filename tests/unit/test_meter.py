"""The consistency meter's parts: statistics, verdicts, sampling, the rolling window, and
the engine over a mock transport."""

from __future__ import annotations

import dataclasses
import json
import math
import uuid
from typing import Any

import httpx
import pytest

from libs.common import events
from libs.common.settings import KafkaSettings
from services.meter.meter import PROBE_PATH, Meter, sampled
from services.meter.report import Tally, Window, delay_label, row_of
from services.meter.stats import (
    beta_cdf,
    format_bound,
    format_nines,
    format_percent,
    fresh_ratio,
    nines_supported,
    stale_upper_bound,
)
from services.meter.verdict import Recent, Target, judge, targets

# -- statistics ------------------------------------------------------------------------------


def test_beta_cdf_matches_closed_forms() -> None:
    # I_x(1, b) = 1 - (1 - x)^b and I_x(a, 1) = x^a
    for x in (0.001, 0.1, 0.5, 0.9):
        assert beta_cdf(x, 1, 7) == pytest.approx(1 - (1 - x) ** 7, rel=1e-10)
        assert beta_cdf(x, 5, 1) == pytest.approx(x**5, rel=1e-10)
    assert beta_cdf(0.3, 4, 4) + beta_cdf(0.7, 4, 4) == pytest.approx(1.0)
    assert beta_cdf(0.0, 2, 2) == 0.0 and beta_cdf(1.0, 2, 2) == 1.0


def test_clopper_pearson_upper_limits() -> None:
    assert stale_upper_bound(0, 0) is None
    assert stale_upper_bound(5, 5) == 1.0
    # published one-sided 95 % limits: 1 in 10 -> 0.3942; two-sided 95 % (0.975) -> 0.4450
    assert stale_upper_bound(1, 10) == pytest.approx(0.39416, abs=1e-4)
    assert stale_upper_bound(1, 10, 0.975) == pytest.approx(0.44502, abs=1e-4)
    # none in n: 1 - 0.05^(1/n), about 3/n ("rule of three")
    assert stale_upper_bound(0, 3000) == pytest.approx(1 - 0.05 ** (1 / 3000))
    # 5 in 100,000: about 10.51 / 100,000 (the Poisson limit)
    assert stale_upper_bound(5, 100_000) == pytest.approx(10.51e-5, rel=2e-3)
    # a million checks with half stale: near 0.5, above it
    bound = stale_upper_bound(500_000, 1_000_000)
    assert bound is not None and 0.5 < bound < 0.501


def test_nines_are_what_the_bound_supports_and_never_rounded_up() -> None:
    assert nines_supported(0, 0) is None
    assert nines_supported(0, 3000) == 3.0  # the example
    assert nines_supported(1, 3000) == 2.8  # one stale supports fewer nines than none
    assert nines_supported(0, 1_000_000) == 5.5
    assert nines_supported(10, 10) == 0.0
    for n in (10, 100, 1000, 10_000):
        assert nines_supported(1, n) < nines_supported(0, n)  # type: ignore[operator]


def test_formatting() -> None:
    assert fresh_ratio(0, 0) is None and fresh_ratio(3, 1) == 0.75
    assert format_percent(411, 1) == "99.75%"  # 99.757...: rounded down
    assert format_percent(0, 0) == "-"
    assert format_percent(412, 0) == "100%"
    text = format_percent(999_999, 1)
    assert text != "100%" and float(text.rstrip("%")) < 100
    assert format_percent(0, 5) == "0.00%"
    assert format_bound(0, 3000) == "≤ 0.10%"
    assert format_bound(0, 0) == "-"
    assert format_nines(0, 3000) == "3.0" and format_nines(0, 0) == "-"


# -- verdicts --------------------------------------------------------------------------------


def _probe(state: str, version: object = 7, **extra: Any) -> dict[str, Any]:
    return {"state": state, "version": version, "generation": 0, **extra}


@pytest.mark.parametrize(
    ("target", "probe", "expected"),
    [
        (Target("key", "n", "k", None, version=7), _probe("hit"), "fresh"),
        (Target("key", "n", "k", None, version=7), _probe("hit", 9), "fresh"),
        (Target("key", "n", "k", None, version=7), _probe("hit", 6), "stale"),
        (Target("key", "n", "k", None, version=7), _probe("stale", 6), "stale"),  # SWR-served
        (Target("key", "n", "k", None, version=7), _probe("negative", 3), "stale"),
        (Target("key", "n", "k", None, version=7), _probe("tombstone", 6), "stale"),
        (Target("key", "n", "k", None, version=7), _probe("tombstone", 8), "fresh"),
        (Target("key", "n", "k", None, version=7), _probe("absent", None), "not_cached"),
        (Target("delete", "n", "k", None, version=7, deleted=True), _probe("hit", 6), "stale"),
        (Target("delete", "n", "k", None, version=7, deleted=True), _probe("tombstone"), "fresh"),
        (Target("delete", "n", "k", None, version=7, deleted=True), _probe("negative"), "fresh"),
        (Target("namespace", "n", "k", None, generation=5), _probe("hit", generation=4), "stale"),
        (Target("namespace", "n", "k", None, generation=5), _probe("hit", generation=5), "fresh"),
        (
            Target("namespace", "n", "k", None, generation=5),
            _probe("negative", generation=4),
            "stale",
        ),
        (
            Target("namespace", "n", "k", None, generation=5),
            _probe("tombstone", generation=4),
            "fresh",
        ),
        (
            Target("tag", "n", "k", None, tag="t", tag_version=5),
            _probe("hit", tags={"t": 4}),
            "stale",
        ),
        (
            Target("tag", "n", "k", None, tag="t", tag_version=5),
            _probe("hit", tags={"t": 5}),
            "fresh",
        ),
        (Target("tag", "n", "k", None, tag="t", tag_version=5), _probe("hit", tags={}), "fresh"),
        (Target("tag", "n", "k", None, tag="t", tag_version=5), _probe("hit"), "error"),
        (Target("key", "n", "k", None, version=7), None, "error"),
        (Target("key", "n", "k", None, version=7), {"state": "weird"}, "error"),
        (Target("key", "n", "k", None, version=7), _probe("hit", "7"), "error"),
    ],
)
def test_judge(target: Target, probe: dict[str, Any] | None, expected: str) -> None:
    assert judge(target, probe) == expected


def test_recent_keys_are_bounded_and_newest_first() -> None:
    recent = Recent(per_group=3, groups=4)
    for i in range(5):
        recent.saw("n", f"k{i}", ("t",) if i % 2 else ())
    assert recent.keys("n") == ["k4", "k3", "k2"]
    assert recent.keys("n", "t") == ["k3", "k1"]
    assert recent.keys("n", limit=1) == ["k4"]
    for ns in ("a", "b", "c"):
        recent.saw(ns, "x")
    # five groups for four: the least recently written, (n, t), went first
    assert recent.keys("n", "t") == [] and recent.keys("n") == ["k4", "k3", "k2"]
    assert recent.keys("c") == ["x"]


def test_targets_of_every_kind() -> None:
    recent = Recent()
    recent.saw("n", "a", ("t",))
    recent.saw("n", "b")

    def home(ns: str, key: str) -> str:
        return "us-east"

    key = targets(events.key_event("n", "k", 9, "set", origin="us-east"), recent, home)
    assert key == [Target("key", "n", "k", "us-east", version=9)]
    gone = targets(events.key_event("n", "k", 9, "delete", origin="us-east"), recent, home)
    assert gone[0].kind == "delete" and gone[0].deleted
    dbz = targets(events.key_event("n", "k", 9, "set", origin="db"), recent, home, debezium=True)
    assert dbz[0].kind == "debezium"
    ns = targets(events.namespace_event("n", 12, origin="us-east"), recent, home)
    assert [(t.kind, t.key, t.generation) for t in ns] == [
        ("namespace", "b", 12),
        ("namespace", "a", 12),
    ]
    tag = targets(events.tag_event("n", "t", 4, origin="us-east"), recent, home)
    assert [(t.kind, t.key, t.tag, t.tag_version) for t in tag] == [("tag", "a", "t", 4)]
    assert targets(events.tag_event("n", "none", 4, origin="us-east"), recent, home) == []


# -- counts and windows ----------------------------------------------------------------------


def test_tally_counts_every_verdict_apart() -> None:
    tally = Tally()
    for verdict in ("fresh", "fresh", "stale", "not_cached", "error"):
        tally.add(verdict, "key", 10.0)
    tally.add("stale", "tag", 30.0)
    tally.late += 2
    row = row_of("eu-west", 1.0, False, tally)
    assert (row.checks, row.fresh, row.stale, row.not_cached, row.errors, row.late) == (
        6,
        2,
        2,
        1,
        1,
        2,
    )
    assert row.cells()[:9] == ("eu-west", "1 s", "6", "2", "2", "1", "1", "2", "50.00%")
    assert row.lag_mean_ms == pytest.approx(80 / 6) and row.lag_max_ms == 30.0
    assert row.by_kind["tag"]["stale"] == 1 and "namespace" not in row.by_kind
    assert row_of("us-east", 1.0, True, Tally()).label == "us-east (home)"
    as_dict = row.as_dict()
    assert as_dict["nines"] == nines_supported(2, 4) and as_dict["stale_upper_bound"] > 0.5
    # of all reads (a region with no copy fills from the home): 2 stale of 5
    assert as_dict["stale_of_reads"] == 0.4


def test_window_is_bounded_by_age_and_size_and_shows_errors() -> None:
    window = Window(seconds=10.0, size=3)
    assert window.fresh_ratio() is None and window.error_ratio() is None
    window.add(0.0, "fresh")
    window.add(1.0, "stale")
    assert window.fresh_ratio() == 0.5
    window.add(2.0, "error")
    window.add(3.0, "fresh")  # the oldest falls out: size 3
    assert len(window) == 3 and window.fresh_ratio() == 0.5
    assert window.error_ratio() == pytest.approx(1 / 3)
    window.add(12.5, "error")  # everything before 2.5 is too old
    assert len(window) == 2 and window.fresh_ratio() == 1.0 and window.error_ratio() == 0.5
    window.prune(100.0)
    assert window.fresh_ratio() is None


def test_sampling_is_deterministic_and_near_the_rate() -> None:
    ids = [uuid.UUID(int=i).hex for i in range(20_000)]
    first = [sampled(i, 0.1) for i in ids]
    assert first == [sampled(i, 0.1) for i in ids]  # the same events on every run
    assert 0.09 < sum(first) / len(ids) < 0.11
    assert all(sampled(i, 1.0) for i in ids[:100])
    assert not any(sampled(i, 0.0) for i in ids[:100])
    assert all(sampled(i, 0.5) for i, s in zip(ids, first, strict=True) if s)
    assert delay_label(1.0) == "1s" and delay_label(0.5) == "0.5s"


def test_meter_checks_its_arguments() -> None:
    kafka = KafkaSettings()
    with pytest.raises(ValueError, match="region"):
        Meter(kafka, {})
    with pytest.raises(ValueError, match="delays"):
        Meter(kafka, {"us-east": "http://x"}, delays=[0.0])
    with pytest.raises(ValueError, match="sample_rate"):
        Meter(kafka, {"us-east": "http://x"}, sample_rate=2.0)
    meter = Meter(kafka, {"us-east": "http://x/", "eu-west": "http://y"}, delays=[5, 1, 5])
    assert meter.delays == (1.0, 5.0)
    assert meter.urls["us-east"] == "http://x"
    report = meter.report()
    assert [(r.region, r.delay, r.home) for r in report.rows][:4] == [
        ("us-east", 1.0, False),
        ("us-east", 5.0, False),
        ("eu-west", 1.0, False),
        ("eu-west", 5.0, False),
    ]
    assert report.sampled_events == 0 and report.checks == 0


# -- the engine ------------------------------------------------------------------------------


async def test_probes_every_region_after_each_delay() -> None:
    """A meter fed by hand over a mock transport: verdicts per region, the home region
    apart, a hung region's checks as errors without starving the others, late checks
    skipped, and every gauge moving."""
    held = {"us-east": 7, "eu-west": 5}
    asked: list[tuple[str, list[dict[str, str]]]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        region = {"u": "us-east", "e": "eu-west", "a": "ap-south"}[request.url.host[0]]
        assert request.url.path == PROBE_PATH and request.method == "POST"
        items = json.loads(request.content)["items"]
        asked.append((region, items))
        if region == "ap-south":
            return httpx.Response(504, text="gateway timeout")  # a stub that only errs
        probes = [_probe("hit", held[region], ns=i["ns"], key=i["key"]) for i in items]
        return httpx.Response(200, json={"region": region, "items": probes})

    urls = {"us-east": "http://us", "eu-west": "http://eu", "ap-south": "http://ap"}
    meter = Meter(
        KafkaSettings(),
        urls,
        sample_rate=1.0,
        delays=[0.05, 0.1],
        transport=httpx.MockTransport(answer),
    )
    await meter.start(follow=False)
    try:
        assert meter.offer(events.key_event("default", "a/b c", 7, "set", origin="us-east"))
        # handed to the broker 10 s ago: its checks are long overdue, so they are skipped
        old = dataclasses.replace(
            events.key_event("default", "old", 7, "set", origin="us-east"),
            ts_ms=events.now_ms() - 10_000,
        )
        assert meter.offer(old)
        # nothing was seen written in the namespace: an invalidation with no key to probe
        assert not meter.offer(events.namespace_event("default", 3, origin="us-east"))
        assert await meter.drain(10.0)
    finally:
        await meter.stop()

    report = meter.report()
    assert report.sampled_events == 2 and report.late == 6
    cells = {(r.label, r.delay): (r.fresh, r.stale, r.not_cached, r.errors) for r in report.rows}
    for delay in (0.05, 0.1):
        assert cells["us-east (home)", delay] == (1, 0, 0, 0)
        assert cells["us-east", delay] == (0, 0, 0, 0)
        assert cells["eu-west", delay] == (0, 1, 0, 0)
        assert cells["ap-south", delay] == (0, 0, 0, 1)
    assert all(items == [{"ns": "default", "key": "a/b c"}] for _, items in asked)
    text = meter.metrics.render().decode()
    assert 'mrcache_meter_checks_total{delay="0.05s",region="eu-west",result="stale"} 1.0' in text
    assert 'mrcache_meter_freshness_ratio{delay="0.1s",region="eu-west"} 0.0' in text
    # a region that only errs shows as errors: its freshness gauge is NaN, not frozen
    assert 'mrcache_meter_error_ratio{delay="0.1s",region="ap-south"} 1.0' in text
    assert 'mrcache_meter_freshness_ratio{delay="0.1s",region="ap-south"} NaN' in text
    assert 'mrcache_meter_checks_skipped_total{delay="0.05s",reason="late"} 3.0' in text
    assert math.isnan(report.rows[0].lag_mean_ms or math.nan)  # us-east non-home: no checks


async def test_a_hung_region_does_not_starve_the_others() -> None:
    """Each region has its own requests in flight: with one region never answering, the
    other's checks all run on time."""
    import asyncio

    release = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        items = json.loads(request.content)["items"]
        if request.url.host.startswith("hung"):
            await release.wait()
        probes = [_probe("hit", 7) for _ in items]
        return httpx.Response(200, json={"items": probes})

    class Transport(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            await request.aread()
            return await handler(request)

    meter = Meter(
        KafkaSettings(),
        {"hung": "http://hung", "ok": "http://ok"},
        sample_rate=1.0,
        delays=[0.05],
        concurrency=1,
        timeout=30.0,
        transport=Transport(),
    )
    await meter.start(follow=False)
    try:
        for i in range(50):
            meter.offer(events.key_event("default", f"k{i}", 7, "set", origin="x"))
        async with asyncio.timeout(10):
            while (meter.report().rows[1].fresh) < 50:
                await asyncio.sleep(0.02)
        release.set()
    finally:
        await meter.stop()
    ok = next(r for r in meter.report().rows if r.region == "ok")
    assert ok.fresh == 50 and ok.late == 0
