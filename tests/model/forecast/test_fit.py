"""The refit (scaler/model/forecast/fit.py) and its orchestration by DemandForecaster."""

from __future__ import annotations

import pytest

from scaler.model.forecast.forecaster import DemandForecaster
from scaler.model.forecast.smoother import SmoothingParams
from tests.model.forecast.series import STEP, STEPS_PER_DAY, fed, noisy_sine


def test_refit_is_due_daily_once_enough_history_is_kept() -> None:
    f = fed(noisy_sine(12), 2 * STEPS_PER_DAY)
    assert not f.needs_refit
    f = fed(noisy_sine(13), STEPS_PER_DAY + 1, f, start=2 * STEPS_PER_DAY)
    assert f.needs_refit
    f.refit()
    assert not f.needs_refit
    f = fed(noisy_sine(14), STEPS_PER_DAY, f, start=3 * STEPS_PER_DAY + 1)
    assert f.needs_refit


def test_refit_changes_only_the_parameters() -> None:
    f = fed(noisy_sine(15), 5 * STEPS_PER_DAY)
    before = f.to_dict()
    params = f.fit_params()
    assert f.to_dict() == before  # fitting only reads
    f.set_params(SmoothingParams(0.3, 0.1, 0.85, (0.2, 0.0)))
    after = f.to_dict()
    for key in ("params", "last_refit_k"):
        before.pop(key)
        after.pop(key)
    assert after == before
    assert all(0.0 <= g <= 0.5 for g in params.gammas)


def test_set_params_checks_the_number_of_seasons() -> None:
    with pytest.raises(ValueError, match="1 gammas for 2 seasons"):
        DemandForecaster(STEP).set_params(SmoothingParams(gammas=(0.1,)))
