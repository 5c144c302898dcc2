"""DemandForecaster (scaler/model/forecast/forecaster.py): missing data and gaps, warm starts,
its settings, and forecasts that are never negative or NaN (zeros: test_zeros.py)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.model.forecast.forecaster import DemandForecaster, Forecast
from tests.model.forecast.series import DAY, STEP, STEPS_PER_DAY, fed, noisy_sine, sine

# -- missing data and gaps --------------------------------------------------------------


def test_gap_of_nans_is_not_taken_as_zero() -> None:
    days = 3
    f = fed(sine, days * STEPS_PER_DAY)
    gap = 18  # 3 hours
    start = days * STEPS_PER_DAY
    for i in range(start, start + gap):
        f.observe(i * STEP, math.nan)
        assert f.forecast(STEP).mean == pytest.approx(sine((i + 1) * STEP), abs=0.05 * 200)
    f.observe((start + gap) * STEP, sine((start + gap) * STEP))
    assert f.forecast(STEP).mean == pytest.approx(sine((start + gap + 1) * STEP), abs=0.05 * 200)


def test_gap_in_time_is_walked_through() -> None:
    days = 3
    f = fed(sine, days * STEPS_PER_DAY)
    resume = days * STEPS_PER_DAY + 30  # five hours without any call
    f.observe(resume * STEP, sine(resume * STEP))
    assert f.forecast(STEP).mean == pytest.approx(sine((resume + 1) * STEP), abs=0.05 * 200)


def test_long_gap_in_time_is_walked_through_cheaply() -> None:
    f = fed(sine, 3 * STEPS_PER_DAY)
    resume = 60 * STEPS_PER_DAY  # eight weeks later
    f.observe(resume * STEP, sine(resume * STEP))
    fc = f.forecast(STEP)
    assert fc.mean == pytest.approx(sine((resume + 1) * STEP), abs=0.1 * 200)


def test_repeated_or_older_step_is_ignored() -> None:
    f = fed(sine, STEPS_PER_DAY + 5)
    before = f.to_dict()
    f.observe((STEPS_PER_DAY + 4) * STEP + 1.0, 1e6)  # same step again
    f.observe(0.0, 1e6)  # an old one
    assert f.to_dict() == before


# -- warm start -------------------------------------------------------------------------


def test_warm_start_equals_observing_one_by_one() -> None:
    series = noisy_sine(11)
    times = [i * STEP for i in range(3 * STEPS_PER_DAY)]
    values = [series(t) for t in times]
    values[100:104] = [math.nan, 0.0, 0.0, math.nan]
    a, b = DemandForecaster(STEP), DemandForecaster(STEP)
    a.warm_start(times, values)
    for t, v in zip(times, values, strict=True):
        b.observe(t, v)
    assert a.to_dict() == b.to_dict()
    assert a.forecast(1800.0) == b.forecast(1800.0)


# -- configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"step_s": 0.0}, "step_s has value 0.0"),
    ({"step_s": 600.0, "seasons_s": (1000.0,)}, "seasons_s has value 1000.0"),
    ({"step_s": 600.0, "quantile": 1.0}, "quantile has value 1.0"),
    ({"step_s": 600.0, "max_horizon_s": -1.0}, "max_horizon_s has value -1.0"),
    ({"step_s": 600.0, "arrivals_per_unit": 0.0}, "arrivals_per_unit has value 0.0"),
    ({"step_s": 600.0, "arrivals_per_unit": math.nan}, "arrivals_per_unit has value nan"),
])
def test_bad_settings_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DemandForecaster(**kwargs)  # type: ignore[arg-type]


# -- never negative, never NaN ----------------------------------------------------------


def test_mean_is_never_negative_when_the_season_outswings_the_level() -> None:
    f = fed(lambda t: 500.0 + 480.0 * math.sin(2 * math.pi * t / DAY), 3 * STEPS_PER_DAY)
    f = fed(lambda t: 5.0, 40, f, start=3 * STEPS_PER_DAY)  # demand fell to almost nothing
    for h in (1, 6, 36, 72):
        check(f.forecast(h * STEP))


readings = st.one_of(
    st.floats(min_value=0.0, max_value=1e4),
    st.floats(min_value=0.0, max_value=1e15).map(lambda v: v * v),
    st.sampled_from([0.0, math.nan, math.inf, -math.inf, -5.0, 1e300, 1.7e308, 5e-324]),
)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(readings, min_size=1, max_size=400),
       jumps=st.lists(st.sampled_from([1, 1, 1, 2, 7, 200]), min_size=1, max_size=400),
       horizons=st.lists(st.floats(min_value=-1e3, max_value=1e7), min_size=1, max_size=4))
def test_forecasts_are_never_negative_or_nan(values: list[float], jumps: list[int],
                                             horizons: list[float]) -> None:
    f = DemandForecaster(60.0, seasons_s=(3600.0, 4 * 3600.0), max_horizon_s=900.0)
    k = 0
    for i, v in enumerate(values):
        k += jumps[i % len(jumps)]
        f.observe(k * 60.0, v)
        for h in horizons:
            check(f.forecast(h))
    json.dumps(f.to_dict(), allow_nan=False)


def check(fc: Forecast) -> None:
    assert math.isfinite(fc.mean) and math.isfinite(fc.upper)
    assert 0.0 <= fc.mean <= fc.upper
