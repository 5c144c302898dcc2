"""The upper bound (scaler/model/forecast/conformal.py), through DemandForecaster."""

from __future__ import annotations

import math
import random

import pytest

from scaler.model.forecast.forecaster import DemandForecaster
from tests.model.forecast.series import DAY, STEP, STEPS_PER_DAY, fed, noisy_sine, sine


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
    f = fed(noisy_sine(9), 4 * STEPS_PER_DAY)
    widths = [f.forecast(h * STEP).upper - f.forecast(h * STEP).mean for h in (1, 3, 12, 48)]
    assert widths == sorted(widths)


def test_one_early_jump_does_not_keep_a_new_workloads_band_wide() -> None:
    """A new workload jumps from 10 to 50 at its second reading, then wobbles by 1. The error
    scale is the plain mean of the errors so far (40 once, then 1s), not the first error
    decaying at 2% a step: after 12 calm steps the one-step band is 3 scale units (the prior:
    too few errors to calibrate) of about 4 and 1, not of about 31 and 1 (width ~17)."""
    f = DemandForecaster(STEP)
    values = [10.0, 50.0, *(50.0 + (i % 2) for i in range(12))]
    for i, x in enumerate(values):
        f.observe(i * STEP, x)
    fc = f.forecast(STEP)
    assert fc.mean == values[-1]
    assert 1.0 < fc.upper - fc.mean < 10.0
