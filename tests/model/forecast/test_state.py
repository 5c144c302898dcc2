"""The forecaster's state as JSON-safe data and back (scaler/model/forecast/state.py)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest

from scaler.model.forecast.forecaster import DemandForecaster
from tests.model.forecast.series import DAY, STEP, STEPS_PER_DAY, noisy_sine


def test_state_survives_a_json_round_trip() -> None:
    series = noisy_sine(10)
    values = [series(i * STEP) for i in range(9 * STEPS_PER_DAY)]
    values[500:503] = [0.0, 0.0, 0.0]
    values[700] = math.nan
    f = DemandForecaster(STEP)
    for i, v in enumerate(values[:8 * STEPS_PER_DAY]):
        f.observe(i * STEP, v)
    f.refit()
    g = DemandForecaster.from_dict(json.loads(json.dumps(f.to_dict(), allow_nan=False)))
    assert g.to_dict() == f.to_dict()
    for i in range(8 * STEPS_PER_DAY, 9 * STEPS_PER_DAY):
        f.observe(i * STEP, values[i])
        g.observe(i * STEP, values[i])
        for h in (STEP, 3 * STEP, 4000.0, DAY):
            assert f.forecast(h) == g.forecast(h)


def test_from_dict_rejects_an_unknown_version() -> None:
    state = DemandForecaster(STEP).to_dict()
    state["version"] = 99
    with pytest.raises(ValueError, match="version 99"):
        DemandForecaster.from_dict(state)


def test_warm_start_takes_numpy_arrays_and_stays_json_safe() -> None:
    np = pytest.importorskip("numpy")
    f = DemandForecaster(STEP)
    f.warm_start(np.arange(300) * STEP, np.linspace(10.0, 20.0, 300))
    state = json.loads(json.dumps(f.to_dict(), allow_nan=False))
    assert DemandForecaster.from_dict(state).forecast(STEP) == f.forecast(STEP)


def test_arrivals_per_unit_is_kept() -> None:
    f = DemandForecaster(STEP, arrivals_per_unit=1 / 2000)
    assert DemandForecaster.from_dict(f.to_dict()).arrivals_per_unit == 1 / 2000


def two_days_of(series: Callable[[float], float]) -> DemandForecaster:
    f = DemandForecaster(STEP)
    for i in range(2 * STEPS_PER_DAY):
        f.observe(i * STEP, series(i * STEP))
    return f


def saved_as(f: DemandForecaster, version: int) -> dict[str, Any]:
    """``f``'s state as that version saved it: version 2 had no ``arrivals_per_unit``,
    versions 2 and 3 no count of the errors in the error scales, versions before 5 no
    ``zero_holes``, and versions before 6 had ``zero_trust_s`` (an hour)."""
    state = f.to_dict()
    state["version"] = version
    if version == 2:
        del state["config"]["arrivals_per_unit"]
    if version < 4:
        for core in [state["core"], *(c for _, c in state["checkpoints"])]:
            del core["scale_errors"]
    if version < 5:
        del state["config"]["zero_holes"]
    if version < 6:
        state["config"]["zero_trust_s"] = 3600.0
    return state


def goes_on_as(old: DemandForecaster, new: DemandForecaster,
               series: Callable[[float], float]) -> None:
    for i in range(2 * STEPS_PER_DAY, 2 * STEPS_PER_DAY + 50):
        x = series(i * STEP)
        old.observe(i * STEP, x)
        new.observe(i * STEP, x)
        assert old.forecast(3 * STEP) == new.forecast(3 * STEP)


def test_a_version_2_state_is_read_as_counting_requests() -> None:
    series = noisy_sine(12)
    f = two_days_of(series)
    old = DemandForecaster.from_dict(saved_as(f, 2))
    assert old.arrivals_per_unit == 1.0
    goes_on_as(old, DemandForecaster.from_dict(f.to_dict()), series)


def test_a_version_3_state_is_read_with_its_scales_past_their_warm_up() -> None:
    """Version 3 kept no count of the errors in its scales: they are read as exponentially
    weighted already, so the forecasts go on exactly as from a version-4 copy."""
    series = noisy_sine(13)
    f = two_days_of(series)
    goes_on_as(DemandForecaster.from_dict(saved_as(f, 3)),
               DemandForecaster.from_dict(f.to_dict()), series)


def test_a_version_4_state_takes_improbable_zeros_for_holes_as_it_did() -> None:
    """Every forecaster before version 5 took an improbable zero for a collection hole: read
    back, it still does (a new one takes zeros for data)."""
    f = two_days_of(noisy_sine(14))
    old = DemandForecaster.from_dict(saved_as(f, 4))
    assert old.zero_holes and not DemandForecaster.from_dict(f.to_dict()).zero_holes
    goes_on_as(old, DemandForecaster.from_dict(f.to_dict()), noisy_sine(14))


def test_a_version_5_state_goes_on_as_saved_and_its_zero_trust_s_is_ignored() -> None:
    """Version 6 dropped ``zero_trust_s`` (a suspect zero is missing until ``zero_forget_s``):
    a version-5 state, which has it, is read and goes on as the current one."""
    series = noisy_sine(15)
    f = two_days_of(series)
    goes_on_as(DemandForecaster.from_dict(saved_as(f, 5)),
               DemandForecaster.from_dict(f.to_dict()), series)
