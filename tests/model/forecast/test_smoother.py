"""The mean (scaler/model/forecast/smoother.py), through DemandForecaster on synthetic series
with known answers."""

from __future__ import annotations

import itertools
import math

import pytest

from scaler.model.forecast.forecaster import DemandForecaster
from scaler.model.forecast.smoother import SmoothingParams
from tests.model.forecast.series import DAY, STEP, STEPS_PER_DAY, fed, noisy_level, sine


@pytest.mark.parametrize(("horizon_s", "tolerance"),
                         [(STEP, 0.01), (3600.0, 0.01), (6 * 3600.0, 0.03), (DAY, 0.01)])
def test_noiseless_daily_sine_is_learnt(horizon_s: float, tolerance: float) -> None:
    days = 4
    f = fed(sine, days * STEPS_PER_DAY)
    last = (days * STEPS_PER_DAY - 1) * STEP
    assert f.forecast(horizon_s).mean == pytest.approx(sine(last + horizon_s), abs=tolerance * 200)


WEEK = 7 * DAY


def weekends_quieter(t: float) -> float:
    """A daily sine peaking at 06:00: 800 on weekdays, 550 on Saturdays and Sundays (t=0 is a
    Monday)."""
    swing = 50.0 if int(t // DAY) % 7 >= 5 else 300.0
    return 500.0 + swing * math.sin(2 * math.pi * t / DAY)


def test_weekly_season_learns_that_weekends_are_quieter() -> None:
    """With a slow level (alpha at its lower bound, a fast weekly gamma) the weekly indices
    carry what differs by weekday: after three weeks and a half (the weekly season learns
    from the second week on) Saturday and Sunday 06:00 are forecast below Friday 06:00.
    (At the default alpha 0.7 the level absorbs the weekend within a step or two and the
    weekly indices stay near zero, so this test sets its own parameters.)"""
    f = DemandForecaster(STEP)
    f.set_params(SmoothingParams(alpha=0.05, beta=0.0, phi=0.9, gammas=(0.05, 0.5)))
    n = 3 * 7 * STEPS_PER_DAY + 4 * STEPS_PER_DAY  # up to Thursday midnight of week 4
    f = fed(weekends_quieter, n, f)
    last = (n - 1) * STEP
    friday = 3 * WEEK + 4 * DAY + 6 * 3600.0
    fri, sat, sun = (f.forecast(friday + d * DAY - last).mean for d in range(3))
    assert sat <= fri - 25.0
    assert sun <= fri - 75.0


def test_trend_is_damped_so_a_stopped_ramp_levels_off() -> None:
    """Damped trend: each step ahead adds phi times the previous step's increase, so the
    forecast levels off at level + trend * phi / (1 - phi) instead of growing linearly."""
    f = DemandForecaster(STEP, seasons_s=())
    phi = 0.9
    f.set_params(SmoothingParams(alpha=0.5, beta=0.3, phi=phi, gammas=()))
    n, slope = 100, 2.0
    f = fed(lambda t: 100.0 + slope * t / STEP, n, f)  # a ramp, last reading 298
    last = 100.0 + slope * (n - 1)
    means = [f.forecast(m * STEP).mean for m in range(1, 8)]
    rises = [b - a for a, b in itertools.pairwise(means)]
    assert all(r > 0 for r in rises)  # the trend is learnt
    for a, b in itertools.pairwise(rises):
        assert b / a == pytest.approx(phi, rel=1e-6)
    far = f.forecast(1000 * STEP).mean  # undamped this would be ~last + 1000 * slope
    assert last < far < last + 10 * slope


def test_falls_back_to_last_value_before_a_season_is_seen() -> None:
    f = fed(lambda t: 100.0 + t / STEP, 10)
    assert f.forecast(STEP).mean == 109.0
    assert f.forecast(3 * 3600.0).mean == 109.0


def test_first_observation_gives_a_forecast() -> None:
    f = DemandForecaster(STEP)
    f.observe(0.0, 42.0)
    fc = f.forecast(STEP)
    assert fc.mean == 42.0 and fc.upper >= fc.mean


def test_step_change_is_followed_within_a_few_steps() -> None:
    before, after = noisy_level(100.0, 2.0, seed=1), noisy_level(200.0, 2.0, seed=2)
    f = fed(before, 2 * STEPS_PER_DAY)
    f = fed(after, 3, f, start=2 * STEPS_PER_DAY)
    assert f.forecast(STEP).mean == pytest.approx(200.0, rel=0.05)


def test_one_burst_does_not_wreck_the_level() -> None:
    series = noisy_level(100.0, 2.0, seed=3)
    f = fed(series, 2 * STEPS_PER_DAY)
    n = 2 * STEPS_PER_DAY
    f.observe(n * STEP, 500.0)  # a 5x spike
    assert f.forecast(STEP).mean == pytest.approx(100.0, rel=0.1)
    f.observe((n + 1) * STEP, series(0.0))
    assert f.forecast(STEP).mean == pytest.approx(100.0, rel=0.05)


def test_no_seasons_is_a_robust_damped_holt_model() -> None:
    f = DemandForecaster(STEP, seasons_s=())
    f = fed(noisy_level(50.0, 1.0, seed=16), 300, f)
    assert f.forecast(STEP).mean == pytest.approx(50.0, rel=0.05)
