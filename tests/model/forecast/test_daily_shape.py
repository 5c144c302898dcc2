"""The daily shape re-estimated from the kept days: a sharp move the kernel blurred comes back,
noise does not replace what was learnt, and the forecast does not jump when it changes."""

from __future__ import annotations

import math

import numpy as np

from scaler.model.forecast.daily_shape import daily_shape
from scaler.model.forecast.forecaster import DemandForecaster
from scaler.model.forecast.kernel import kernel

STEP_S = 300.0
PERIOD = 288  # 5-minute steps in a day


def _day(sharp: bool) -> np.ndarray:
    """60 req/s, a 30-minute ramp at 08:45 to 300 until 18:00 (sharp) or a sine (smooth)."""
    phase = np.arange(PERIOD) * STEP_S
    if not sharp:
        return 150.0 + 50.0 * np.sin(2 * np.pi * phase / 86400.0)
    ramp = np.clip((phase - 31500.0) / 1800.0, 0.0, 1.0)
    return np.where(phase < 64800.0, 60.0 + 240.0 * ramp, 60.0)


def _readings(days: int, sharp: bool, noise: float, seed: int = 0) -> list[tuple[int, float]]:
    rng = np.random.default_rng(seed)
    values = np.tile(_day(sharp), days) * np.exp(rng.normal(0.0, noise, days * PERIOD))
    return [(k, float(v)) for k, v in enumerate(values)]


def _blurred(profile: np.ndarray, half_width: int) -> np.ndarray:
    out = np.zeros_like(profile)
    for offset, weight in kernel(half_width):
        out += weight * np.roll(profile, -offset)
    return out


def test_a_sharp_ramp_seen_every_day_replaces_the_blurred_indices():
    truth = _day(sharp=True) - _day(sharp=True).mean()
    live = _blurred(truth, 10) + 7.0  # what +-50 minutes of kernel learns; any mean
    shape = daily_shape(_readings(7, sharp=True, noise=0.05), PERIOD, STEP_S, live)
    assert shape is not None
    assert abs(float(shape.mean()) - 7.0) < 1e-9  # the level keeps its meaning
    ramp = slice(105, 111)  # 08:45-09:15
    assert float(np.max(np.abs(shape[ramp] - 7.0 - truth[ramp]))) < 15.0
    assert float(np.max(np.abs(live[ramp] - 7.0 - truth[ramp]))) > 40.0


def test_indices_as_good_as_the_data_are_kept():
    truth = _day(sharp=False) - _day(sharp=False).mean()
    readings = _readings(7, sharp=False, noise=0.3)
    assert daily_shape(readings, PERIOD, STEP_S, truth) is None


def test_too_few_or_too_patchy_days_change_nothing():
    truth = _day(sharp=True) - _day(sharp=True).mean()
    live = _blurred(truth, 10)
    assert daily_shape(_readings(2, sharp=True, noise=0.05), PERIOD, STEP_S, live) is None
    patchy = [(k, math.nan if k % 2 else x)
              for k, x in _readings(7, sharp=True, noise=0.05)]  # half of every day missing
    assert daily_shape(patchy, PERIOD, STEP_S, live) is None


def test_the_forecaster_reshapes_without_moving_its_next_forecast_off_the_data():
    f = DemandForecaster(STEP_S)
    readings = _readings(8, sharp=True, noise=0.05, seed=1)
    stop = 7 * PERIOD + 100  # 08:20 of the eighth day, just before its ramp
    for k, x in readings[:stop]:
        f.observe(k * STEP_S, x)
    before = f.forecast(STEP_S)
    ahead_before = f.forecast(1800.0)  # 08:50, on the ramp: 30 min of blurred rise ago
    f.refit(f.params)  # the parameters as they are: only the shape can change
    after = f.forecast(STEP_S)
    ahead_after = f.forecast(1800.0)
    true_ahead = float(_day(sharp=True)[106])
    assert abs(after.mean - before.mean) < 0.1 * before.mean
    assert abs(ahead_after.upper - true_ahead) < abs(ahead_before.upper - true_ahead)
    f.refit(f.params)  # a second refit has nothing better to show
    assert f.forecast(1800.0) == ahead_after
