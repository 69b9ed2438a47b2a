"""The meter's statistics: how stale a region may be, given what was counted.

A cell of the meter (a region at a delay) counts ``stale`` served answers among
``served`` (fresh + stale). The observed fraction alone overstates freshness
when little was counted: 0 stale in 300 is not "100 % fresh". The meter
reports the one-sided Clopper-Pearson upper limit of the stale rate at 95 %
confidence, and the nines that limit supports: 0 stale in 3,000 supports
3.0 nines, and one stale always supports fewer nines than none.

Hand-written rather than from scipy: one quantile of the beta distribution is
all the meter needs, and scipy would add tens of MB to a sidecar. The
regularised incomplete beta function is evaluated by its continued fraction
(modified Lentz), the quantile by bisection; both are checked against closed
forms and published values in ``tests/unit/test_meter_stats.py``.
"""

from __future__ import annotations

import math

CONFIDENCE = 0.95
_EPS = 1e-14
_TINY = 1e-300


def _beta_cf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        step = d * c
        h *= step
        if abs(step - 1.0) < _EPS:
            break
    return h


def beta_cdf(x: float, a: float, b: float) -> float:
    """The regularised incomplete beta function I_x(a, b), for a, b > 0."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_cf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_cf(b, a, 1.0 - x) / b


def stale_upper_bound(stale: int, served: int, confidence: float = CONFIDENCE) -> float | None:
    """The one-sided Clopper-Pearson upper limit of the stale rate; None with nothing
    counted. 1.0 when every answer was stale."""
    if served <= 0:
        return None
    if stale >= served:
        return 1.0
    if stale == 0:
        return float(1.0 - (1.0 - confidence) ** (1.0 / served))
    # the p at which seeing `stale` or fewer has probability 1 - confidence
    low, high = stale / served, 1.0
    for _ in range(100):
        mid = (low + high) / 2
        if beta_cdf(mid, stale + 1, served - stale) < confidence:
            low = mid
        else:
            high = mid
        if high - low < 1e-12 * max(mid, 1e-300):
            break
    return high


def nines_supported(stale: int, served: int, confidence: float = CONFIDENCE) -> float | None:
    """``-log10`` of :func:`stale_upper_bound`, rounded down to a tenth (never up)."""
    bound = stale_upper_bound(stale, served, confidence)
    if bound is None:
        return None
    if bound >= 1.0:
        return 0.0
    return math.floor(-math.log10(bound) * 10 + 1e-9) / 10


def fresh_ratio(fresh: int, stale: int) -> float | None:
    """Fresh among served answers (fresh + stale); None with nothing served."""
    served = fresh + stale
    return fresh / served if served else None


def format_percent(fresh: int, stale: int) -> str:
    """The observed fresh share, rounded down: ``99.76%``; ``100%`` only when nothing was
    stale (never rounded up to it)."""
    ratio = fresh_ratio(fresh, stale)
    if ratio is None:
        return "-"
    if not stale:
        return "100%"
    percent = 100 * ratio
    for digits in range(2, 10):
        scale = 10**digits
        text = f"{math.floor(percent * scale) / scale:.{digits}f}"
        if float(text) < 100 and (float(text) > 0 or not fresh):
            return f"{text}%"
    return f"{percent!r}%"


def format_bound(stale: int, served: int) -> str:
    """The stale-rate upper limit as a percentage, rounded up: ``≤ 0.10%``."""
    bound = stale_upper_bound(stale, served)
    if bound is None:
        return "-"
    percent = 100 * bound
    for digits in range(2, 10):
        scale = 10**digits
        value = math.ceil(percent * scale - 1e-9) / scale
        if value > 0 and (value >= 10 ** (1 - digits) or digits == 9):
            return f"≤ {value:.{digits}f}%"
    return f"≤ {percent:.2g}%"


def format_nines(stale: int, served: int) -> str:
    """``2.6 nines``: what the upper limit supports at 95 % confidence."""
    value = nines_supported(stale, served)
    return "-" if value is None else f"{value:.1f}"
