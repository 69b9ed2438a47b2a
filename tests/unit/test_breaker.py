from __future__ import annotations

import pytest

from libs.common.breaker import BreakerSettings, BreakerState, CircuitBreaker
from libs.common.metrics import Metrics
from tests.support.clock import FakeClock

SETTINGS = BreakerSettings(
    window=10.0, min_requests=4, failure_rate=0.5, open_seconds=5.0, half_open_probes=1
)


def make(
    settings: BreakerSettings = SETTINGS, metrics: Metrics | None = None
) -> tuple[CircuitBreaker, FakeClock, list[tuple[BreakerState, BreakerState]]]:
    clock = FakeClock()
    seen: list[tuple[BreakerState, BreakerState]] = []
    breaker = CircuitBreaker(
        "http://origin:80",
        settings,
        metrics=metrics,
        listener=lambda old, new: seen.append((old, new)),
        clock=clock,
    )
    return breaker, clock, seen


def state(breaker: CircuitBreaker) -> str:
    # a function, so mypy does not narrow the property between two reads
    return breaker.state


def run(breaker: CircuitBreaker, *outcomes: bool) -> None:
    for success in outcomes:
        assert breaker.allow()
        breaker.record(success)


def test_stays_closed_below_min_requests() -> None:
    breaker, _, _ = make()
    run(breaker, False, False, False)
    assert state(breaker) == "closed"
    assert breaker.allow()


def test_opens_at_failure_rate() -> None:
    breaker, _, seen = make()
    run(breaker, True, True, False)
    assert state(breaker) == "closed"
    breaker.allow()
    breaker.record(False)  # 2 of 4 failed: 0.5 >= 0.5
    assert state(breaker) == "open"
    assert not breaker.allow()
    assert seen == [("closed", "open")]


def test_stays_closed_below_failure_rate() -> None:
    breaker, _, _ = make()
    run(breaker, True, True, True, False, True, False)  # 2 of 6
    assert state(breaker) == "closed"


def test_old_outcomes_leave_the_window() -> None:
    breaker, clock, _ = make()
    run(breaker, False, False, False)
    clock.advance(10.5)  # past the window: those failures no longer count
    run(breaker, False, True, True)
    assert state(breaker) == "closed"
    breaker.allow()
    breaker.record(False)  # 2 of 4 inside the window
    assert state(breaker) == "open"


def test_window_slides_by_bucket() -> None:
    breaker, clock, _ = make()
    run(breaker, False, False)
    clock.advance(5.0)
    run(breaker, True)
    clock.advance(5.5)  # the first two failures left, the success is still in
    run(breaker, False, True, True)
    assert state(breaker) == "closed"  # 1 of 4 failed


def test_half_open_after_open_seconds_then_success_closes() -> None:
    breaker, clock, seen = make()
    run(breaker, False, False, False, False)
    assert state(breaker) == "open"
    clock.advance(4.9)
    assert not breaker.allow()
    clock.advance(0.2)
    assert state(breaker) == "half_open"
    assert breaker.allow()  # the one probe
    assert not breaker.allow()  # no second probe while the first is out
    breaker.record(True)
    assert state(breaker) == "closed"
    assert breaker.allow()
    assert seen == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_half_open_failure_reopens_for_another_period() -> None:
    breaker, clock, seen = make()
    run(breaker, False, False, False, False)
    clock.advance(5.0)
    assert breaker.allow()
    breaker.record(False)
    assert state(breaker) == "open"
    clock.advance(4.0)
    assert not breaker.allow()
    clock.advance(1.0)
    assert breaker.allow()
    assert seen[-2:] == [("half_open", "open"), ("open", "half_open")]


def test_closing_starts_a_fresh_window() -> None:
    breaker, clock, _ = make()
    run(breaker, False, False, False, False)
    clock.advance(5.0)
    run(breaker, True)
    assert state(breaker) == "closed"
    run(breaker, False, False, False)  # the failures before opening are forgotten
    assert state(breaker) == "closed"


def test_several_probes_must_all_succeed() -> None:
    settings = BreakerSettings(min_requests=2, open_seconds=1.0, half_open_probes=3)
    breaker, clock, _ = make(settings)
    run(breaker, False, False)
    clock.advance(1.0)
    assert [breaker.allow() for _ in range(4)] == [True, True, True, False]
    breaker.record(True)
    breaker.record(True)
    assert state(breaker) == "half_open"
    breaker.record(True)
    assert state(breaker) == "closed"


def test_released_probe_slot_comes_back() -> None:
    breaker, clock, _ = make()
    run(breaker, False, False, False, False)
    clock.advance(5.0)
    assert breaker.allow()
    assert not breaker.allow()
    breaker.release()  # the probe was cancelled before it had an outcome
    assert breaker.allow()
    breaker.release()
    breaker.release()  # more releases than probes out change nothing
    assert breaker.allow()
    assert not breaker.allow()


def test_lost_probe_does_not_wedge_half_open() -> None:
    breaker, clock, _ = make()
    run(breaker, False, False, False, False)
    clock.advance(5.0)
    assert breaker.allow()  # this probe never reports back
    clock.advance(4.0)
    assert not breaker.allow()
    clock.advance(1.0)
    assert breaker.allow()


def test_late_outcomes_while_open_are_ignored() -> None:
    breaker, clock, _ = make()
    for _ in range(4):
        assert breaker.allow()
    for _ in range(4):
        breaker.record(False)
    assert state(breaker) == "open"
    breaker.record(True)  # a request let through before it opened
    assert state(breaker) == "open"
    clock.advance(5.0)
    assert state(breaker) == "half_open"


def test_metrics_gauge_and_transitions() -> None:
    metrics = Metrics()
    breaker, clock, _ = make(metrics=metrics)
    origin = {"origin": "http://origin:80"}

    def gauge() -> float | None:
        return metrics.registry.get_sample_value("mrcache_origin_breaker_state", origin)

    def transitions(to: str) -> float | None:
        return metrics.registry.get_sample_value(
            "mrcache_origin_breaker_transitions_total", {**origin, "to": to}
        )

    assert gauge() == 0
    run(breaker, False, False, False, False)
    assert gauge() == 2
    assert transitions("open") == 1
    clock.advance(5.0)
    assert breaker.allow()
    assert gauge() == 1
    breaker.record(False)
    assert gauge() == 2
    assert transitions("open") == 2
    clock.advance(5.0)
    run(breaker, True)
    assert gauge() == 0
    assert transitions("half_open") == 2
    assert transitions("closed") == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window": 0},
        {"min_requests": 0},
        {"failure_rate": 0},
        {"failure_rate": 1.5},
        {"open_seconds": -1},
        {"half_open_probes": 0},
        {"buckets": 0},
    ],
)
def test_settings_are_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="breaker"):
        BreakerSettings(**kwargs)  # type: ignore[arg-type]
