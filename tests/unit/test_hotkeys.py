"""The hot-key detector: Space-Saving over a sample of reads, in windows."""

from __future__ import annotations

import itertools

import pytest

from libs.common.hotkeys import HotKeys
from tests.support.clock import FakeClock


def test_a_key_read_above_the_threshold_is_hot_after_its_window() -> None:
    clock = FakeClock(0.0)
    hot = HotKeys(threshold=100, sample_every=4, window=1.0, clock=clock)
    for _ in range(400):  # 400 reads in the first second
        assert hot.observe("ns", "hot") is False  # not hot before the window ends
    for _ in range(30):
        hot.observe("ns", "cold")
    clock.now = 1.0
    hot.observe("ns", "hot")
    for _ in range(3):
        hot.observe("ns", "x")  # the 4th read since is sampled: the window rolls
    assert hot.is_hot("ns", "hot") and not hot.is_hot("ns", "cold")
    (top, rate), *_ = hot.top(1)
    assert top == ("ns", "hot") and rate == pytest.approx(400, rel=0.05)


def test_heavy_hitters_survive_a_long_tail_of_distinct_keys() -> None:
    clock = FakeClock(0.0)
    hot = HotKeys(threshold=500, sample_every=1, capacity=16, window=1.0, clock=clock)
    tail = (f"k{i}" for i in itertools.count())
    for i in range(20_000):
        # one key in ten is the hot one, the rest never repeat
        hot.observe("ns", "hot" if i % 10 == 0 else next(tail))
    clock.now = 1.0
    hot.tick()
    assert hot.hot == frozenset({("ns", "hot")})
    assert hot.top(1)[0][0] == ("ns", "hot")
    assert len(hot.ranking) <= 16


def test_a_key_stops_being_hot_when_it_stops_being_read() -> None:
    clock = FakeClock(0.0)
    hot = HotKeys(threshold=10, sample_every=1, window=1.0, clock=clock)
    for _ in range(100):
        hot.observe("ns", "k")
    clock.now = 1.0
    hot.tick()
    assert hot.is_hot("ns", "k")
    clock.now = 2.5
    hot.tick()
    assert not hot.is_hot("ns", "k") and hot.ranking == []


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="sample_every"):
        HotKeys(threshold=1, sample_every=0)
