"""The upper bound (scaler/model/forecast/conformal.py), through DemandForecaster."""

from __future__ import annotations

import math
import random

import pytest

from scaler.model.forecast.conformal import (
    ERROR_WINDOW,
    PRIOR_ERRORS,
    ConformalBound,
    bucket_steps,
    prior_z,
)
from scaler.model.forecast.forecaster import DemandForecaster
from scaler.model.forecast.smoother import Smoother, SmoothingParams
from tests.model.forecast.series import (
    DAY,
    STEP,
    STEPS_PER_DAY,
    fed,
    noisy_level,
    noisy_sine,
    sine,
)


@pytest.mark.parametrize("horizon_steps", [1, 3])
def test_upper_bound_covers_the_configured_quantile(horizon_steps: int) -> None:
    rng = random.Random(8)
    f = DemandForecaster(STEP, quantile=0.95)
    pending: dict[int, float] = {}
    hits: list[bool] = []
    for i in range(14 * STEPS_PER_DAY):
        t = i * STEP
        sd = 20.0 + 30.0 * (1.0 + math.sin(2 * math.pi * t / DAY))  # heteroscedastic
        y = max(0.0, sine(t) + rng.gauss(0.0, sd))
        if i in pending and i > 2 * STEPS_PER_DAY:
            hits.append(y <= pending[i])
        f.observe(t, y)
        fc = f.forecast(horizon_steps * STEP)
        assert fc.upper >= fc.mean
        pending[i + horizon_steps] = fc.upper
    assert 0.92 <= sum(hits) / len(hits) <= 0.98


def test_upper_bound_widens_with_the_horizon() -> None:
    """A daily cycle on a random walk: the walk's error grows with the horizon, and so must
    the band. (On a sine with independent noise alone a right seasonal model's error does not
    grow, nor need its band.)"""
    rng = random.Random(9)
    walk = [0.0]
    for _ in range(4 * STEPS_PER_DAY):
        walk.append(walk[-1] + rng.gauss(0.0, 10.0))
    cycle = noisy_sine(9)
    f = fed(lambda t: cycle(t) + walk[round(t / STEP)], 4 * STEPS_PER_DAY)
    widths = [f.forecast(h * STEP).upper - f.forecast(h * STEP).mean for h in (1, 3, 12, 48)]
    assert widths == sorted(widths)
    assert widths[-1] > 2 * widths[0]


@pytest.mark.parametrize("quantile", [0.9, 0.95, 0.99])
def test_before_any_error_the_band_is_the_gaussian_quantile(quantile: float) -> None:
    """Until a horizon has an error its band is the Gaussian quantile at the configured level
    in mean-absolute-error units (the scale's), per square root of a step: 1.61, 2.06 and
    2.92 scale units at 0.9, 0.95 and 0.99; not one width for every level."""
    f = DemandForecaster(STEP, quantile=quantile)
    for i, x in enumerate([100.0, 104.0]):
        f.observe(i * STEP, x)
    gaussian = {0.9: 1.2816, 0.95: 1.6449, 0.99: 2.3263}[quantile] * math.sqrt(math.pi / 2)
    centre = max(f._core.level or 0.0, 104.0)  # the first day's band centre (smoother.py)
    for h in (1, 3):
        want = centre + f._core.scale() * gaussian * math.sqrt(h)
        assert f.forecast(h * STEP).upper == pytest.approx(want, rel=1e-3)


def _bound_with_errors(errors: list[float]) -> ConformalBound:
    bound = ConformalBound(bucket_steps(4), quantile=0.95)
    for z in errors:
        bound.windows[0].add(z)
    return bound


def test_one_outlier_among_few_errors_does_not_set_the_band() -> None:
    """Twenty errors, one of them 8 scale units: the conformal rank at n = 20 is the largest,
    so the empirical quantile alone would be 8, four times the prior, from one reading.
    Pooled with the prior (worth ``PRIOR_ERRORS`` errors) the band widens by half at most."""
    bound = _bound_with_errors([1.0] * 19 + [8.0])
    assert bound.windows[0].quantile(0.95) == 8.0
    assert bound.prior < bound.z_at(1) < 1.5 * bound.prior


def test_the_band_moves_from_the_prior_to_the_evidence_as_errors_arrive() -> None:
    """Errors steadily of one scale unit, half the prior: the band narrows towards 1 as they
    accumulate, and a full window (a week of 10-minute steps) is mostly evidence."""
    widths = [_bound_with_errors([1.0] * n).z_at(1) for n in (1, 20, 100, ERROR_WINDOW)]
    assert widths == sorted(widths, reverse=True)
    prior = prior_z(0.95)
    assert widths[0] == pytest.approx((PRIOR_ERRORS * prior + 1.0) / (PRIOR_ERRORS + 1))
    assert widths[-1] < 1.0 + 0.1 * (prior - 1.0)


def test_in_the_first_day_one_low_reading_does_not_pull_the_band_down() -> None:
    """A new workload steady near 100 reads 50 once (a dip: a partial scrape, a lull). The
    mean is the last value, 50; the band is drawn from the first day's robust level, which a
    lone outlier moves by a clipped fraction: it stays near 100, not 50 plus a few units."""
    f = fed(noisy_level(100.0, 1.0, seed=3), 30)
    f.observe(30 * STEP, 50.0)
    fc = f.forecast(STEP)
    assert fc.mean == 50.0
    assert fc.upper > 98.0


def test_in_the_first_day_a_step_down_is_followed_within_two_readings() -> None:
    """The same workload halves and stays there: two outliers in a row are a level shift
    (the smoother's rule), so the band's centre follows it down at the second low reading."""
    f = fed(noisy_level(100.0, 1.0, seed=3), 30)
    f = fed(noisy_level(50.0, 1.0, seed=4), 2, f, start=30)
    assert f.forecast(STEP).upper < 80.0  # centred on 50; wide: two errors of 50 just seen
    f = fed(noisy_level(50.0, 1.0, seed=5), 6, f, start=32)
    assert f.forecast(STEP).upper < 65.0


def test_one_early_jump_does_not_keep_the_slow_error_scale_high() -> None:
    """A series jumps from 10 to 50 at its second reading, then wobbles by 1. The slow error
    scale (memory ~50 steps) is the plain mean of the errors so far (two of 40 while the level
    catches up, then small ones), not the first error decaying at 2 % a step: after 12 calm
    steps about 8, not over 30. (Through the smoother with no season, so that the level
    follows at the smoothing rate; a new workload's first-day level follows a jump slower,
    and its band stays wider while it does.)"""
    core = Smoother((), (), SmoothingParams(gammas=()))
    for i, x in enumerate([10.0, 50.0, *(50.0 + (i % 2) for i in range(12))]):
        core.update(i, x)
    assert 1.0 < core.scale_slow < 12.0
