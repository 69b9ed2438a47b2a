"""The consistency meter's arithmetic: classification, nines, sampling, the rolling window."""

from __future__ import annotations

import dataclasses
import math
import uuid

import httpx
import pytest

from libs.common import events
from libs.common.settings import KafkaSettings
from services.meter.meter import (
    Meter,
    Row,
    Tally,
    Window,
    classify,
    delay_label,
    format_nines,
    format_percent,
    fresh_ratio,
    key_path,
    nines,
    sampled,
)


@pytest.mark.parametrize(
    ("status", "etag", "version", "expected"),
    [
        (200, '"7"', 7, "fresh"),  # exactly the written version
        (200, '"9"', 7, "fresh"),  # a newer write already
        (200, 'W/"9"', 7, "fresh"),
        (200, '"6"', 7, "stale"),  # an older copy still served
        (200, '"1"', 2**40, "stale"),
        (404, None, 7, "fresh"),  # deleted, expired or not cached: never older
        (200, None, 7, "error"),  # no ETag: cannot tell
        (200, '"abc"', 7, "error"),
        (500, None, 7, "error"),
        (503, '"6"', 7, "error"),
        (401, None, 7, "error"),
        (None, None, 7, "error"),  # timeout / connection refused
    ],
)
def test_classify(status: int | None, etag: str | None, version: int, expected: str) -> None:
    assert classify(status, etag, version) == expected


def test_fraction_and_nines() -> None:
    assert fresh_ratio(0, 0) is None
    assert fresh_ratio(3, 1) == 0.75
    assert nines(0, 0) is None
    assert nines(5, 0) == math.inf
    assert nines(99, 1) == pytest.approx(2.0)
    assert nines(9999, 1) == pytest.approx(4.0)
    assert nines(0, 10) == pytest.approx(0.0)
    assert nines(411, 1) == pytest.approx(2.615, abs=1e-3)


def test_formatting() -> None:
    assert format_percent(411, 1) == "99.76%"
    assert format_nines(411, 1) == "2.6 nines"
    assert format_percent(0, 0) == "-"
    assert format_nines(0, 0) == "-"
    # all fresh: 100%, and only as many nines as the sample can show
    assert format_percent(412, 0) == "100%"
    assert format_nines(412, 0) == "≥ 2.6 nines"
    assert format_nines(1000, 0) == "≥ 3.0 nines"
    # one stale in a million is never rounded up to 100%
    text = format_percent(999_999, 1)
    assert text != "100%" and float(text.rstrip("%")) < 100
    assert format_percent(0, 5) == "0.00%"
    assert format_nines(0, 5) == "0.0 nines"


def test_errors_count_apart_from_the_fraction() -> None:
    tally = Tally()
    for result in ("fresh", "fresh", "stale", "error", "error"):
        tally.add(result)
    tally.add("fresh", miss=True)
    assert (tally.fresh, tally.stale, tally.errors, tally.misses) == (3, 1, 2, 1)
    row = Row("eu-west", 1.0, tally.fresh, tally.stale, tally.errors, tally.misses, None)
    assert row.checks == 6
    assert row.cells() == ("eu-west", "1 s", "6", "3", "1", "2", "75.00%", "0.6 nines")
    as_dict = row.as_dict()
    assert as_dict["fresh_ratio"] == 0.75 and as_dict["nines_at_least"] is None
    all_fresh = Row("us-east", 5.0, 10, 0, 0, 0, 1.0).as_dict()
    assert all_fresh["nines"] is None and all_fresh["nines_at_least"] == pytest.approx(1.0)


def test_sampling_is_deterministic_and_near_the_rate() -> None:
    ids = [uuid.UUID(int=i).hex for i in range(20_000)]
    first = [sampled(i, 0.1) for i in ids]
    assert first == [sampled(i, 0.1) for i in ids]  # the same events on every run
    assert 0.09 < sum(first) / len(ids) < 0.11
    assert all(sampled(i, 1.0) for i in ids[:100])
    assert not any(sampled(i, 0.0) for i in ids[:100])
    # a higher rate samples a superset of a lower one
    assert all(sampled(i, 0.5) for i, s in zip(ids, first, strict=True) if s)


def test_window_is_bounded_by_age_and_size() -> None:
    window = Window(seconds=10.0, size=3)
    assert window.ratio() is None
    window.add(0.0, True)
    window.add(1.0, False)
    assert window.ratio() == 0.5
    window.add(2.0, True)
    window.add(3.0, True)  # the oldest falls out: size 3
    assert len(window) == 3 and window.ratio() == pytest.approx(2 / 3)
    window.add(12.5, True)  # everything before 2.5 is too old
    assert len(window) == 2 and window.ratio() == 1.0
    window.prune(100.0)
    assert window.ratio() is None


def test_key_path_encodes_the_key() -> None:
    assert key_path("default", "a/b c?d#é") == "/v1/ns/default/keys/a%2Fb%20c%3Fd%23%C3%A9"
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
    assert [(r.region, r.delay) for r in report.rows] == [
        ("us-east", 1.0),
        ("us-east", 5.0),
        ("eu-west", 1.0),
        ("eu-west", 5.0),
    ]
    assert report.sampled_events == 0 and report.checks == 0


async def test_checks_read_every_region_after_each_delay() -> None:
    """A meter fed by hand over a mock transport: results per region, late checks skipped."""
    served = {"us-east": (200, "7"), "eu-west": (200, "5"), "ap-south": (503, None)}
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        region = {"u": "us-east", "e": "eu-west", "a": "ap-south"}[request.url.host[0]]
        status, version = served[region]
        headers = {"ETag": f'"{version}"', "X-Cache": "HIT"} if version else {}
        return httpx.Response(status, headers=headers)

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
        fresh = events.key_event("default", "a/b c", 7, "set", origin="us-east")
        assert meter.offer(fresh)
        # published 10 s ago: its checks are long overdue, so they are skipped, not measured
        old = dataclasses.replace(
            events.key_event("default", "old", 7, "set", origin="us-east"),
            ts_ms=events.now_ms() - 10_000,
        )
        assert meter.offer(old)
        assert not meter.offer(events.namespace_event("default", 3, origin="us-east"))
        assert await meter.drain(10.0)
    finally:
        await meter.stop()

    report = meter.report()
    assert report.sampled_events == 2 and report.late == 2
    counts = {(r.region, r.delay): (r.fresh, r.stale, r.errors) for r in report.rows}
    assert counts == {
        ("us-east", 0.05): (1, 0, 0),
        ("us-east", 0.1): (1, 0, 0),
        ("eu-west", 0.05): (0, 1, 0),
        ("eu-west", 0.1): (0, 1, 0),
        ("ap-south", 0.05): (0, 0, 1),
        ("ap-south", 0.1): (0, 0, 1),
    }
    # plain reads: the key URL-encoded, no read-your-writes floor, no conditional header
    assert len(seen) == 6
    for request in seen:
        assert request.url.raw_path == b"/v1/ns/default/keys/a%2Fb%20c"
        assert "min_version" not in str(request.url)
        assert "x-min-version" not in request.headers
        assert "if-none-match" not in request.headers
    text = meter.metrics.render().decode()
    assert 'mrcache_meter_checks_total{delay="0.05s",region="eu-west",result="stale"} 1.0' in text
    assert 'mrcache_meter_freshness_ratio{delay="0.1s",region="us-east"} 1.0' in text
    assert 'mrcache_meter_freshness_ratio{delay="0.1s",region="eu-west"} 0.0' in text
    assert 'mrcache_meter_checks_skipped_total{delay="0.05s",reason="late"} 1.0' in text
