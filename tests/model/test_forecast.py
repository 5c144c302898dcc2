"""DemandForecaster on synthetic series with known answers (scaler/model/forecast.py)."""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.model.forecast.forecaster import DemandForecaster, Forecast
from scaler.model.forecast.smoother import SmoothingParams

STEP = 600.0
DAY = 86400.0
STEPS_PER_DAY = int(DAY / STEP)


def sine(t: float, base: float = 500.0, amp: float = 200.0) -> float:
    return base + amp * math.sin(2 * math.pi * t / DAY)


def fed(series: Callable[[float], float], steps: int, f: DemandForecaster | None = None,
        start: int = 0) -> DemandForecaster:
    """A forecaster (new or given) after ``steps`` readings of ``series`` from step ``start``."""
    f = f or DemandForecaster(STEP)
    for i in range(start, start + steps):
        f.observe(i * STEP, series(i * STEP))
    return f


def noisy_level(level: float, sd: float, seed: int = 0) -> Callable[[float], float]:
    rng = random.Random(seed)
    return lambda t: level + rng.gauss(0.0, sd)


def noisy_sine(seed: int = 0) -> Callable[[float], float]:
    rng = random.Random(seed)
    return lambda t: max(0.0, sine(t) + rng.gauss(0.0, 20.0))


# -- the mean ---------------------------------------------------------------------------


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


# -- zeros ------------------------------------------------------------------------------


def test_half_hour_zero_hole_does_not_drop_the_forecast() -> None:
    series = noisy_level(1000.0, 20.0, seed=4)
    n = 2 * STEPS_PER_DAY
    f = fed(series, n)
    for i in range(n, n + 3):  # 30 minutes of exact zeros
        f.observe(i * STEP, 0.0)
        assert f.forecast(STEP).mean > 900.0
    f = fed(series, 1, f, start=n + 3)
    assert f.forecast(STEP).mean == pytest.approx(1000.0, rel=0.05)


def test_long_zero_run_is_believed_and_recovered_from_at_once() -> None:
    series = noisy_level(1000.0, 20.0, seed=5)
    n = 2 * STEPS_PER_DAY
    f = fed(series, n)
    for i in range(n, n + 6):  # one hour: still suspect
        f.observe(i * STEP, 0.0)
    assert f.forecast(STEP).mean > 900.0
    f.observe((n + 6) * STEP, 0.0)  # past one hour: believed
    outage = f.forecast(STEP)
    assert outage.mean == 0.0
    assert outage.upper > 900.0  # demand coming back is what would break the SLO
    f.observe((n + 7) * STEP, 1000.0)
    assert f.forecast(STEP).mean == pytest.approx(1000.0, rel=0.05)


def test_a_day_of_zeros_starts_over() -> None:
    n = 2 * STEPS_PER_DAY
    f = fed(noisy_level(1000.0, 20.0, seed=6), n)
    f = fed(lambda t: 0.0, STEPS_PER_DAY + 2, f, start=n)
    fc = f.forecast(STEP)
    assert fc.mean == 0.0
    assert fc.upper == pytest.approx(0.0, abs=1e-6)


def test_zeros_of_a_low_traffic_series_are_real() -> None:
    rng = random.Random(7)
    f = fed(lambda t: float(rng.random() < 0.3), 3 * STEPS_PER_DAY)  # mean 0.3, mostly zeros
    assert f.forecast(STEP).mean < 0.6


# -- the upper bound --------------------------------------------------------------------


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


# -- persistence ------------------------------------------------------------------------


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


def test_warm_start_takes_numpy_arrays_and_stays_json_safe() -> None:
    np = pytest.importorskip("numpy")
    f = DemandForecaster(STEP)
    f.warm_start(np.arange(300) * STEP, np.linspace(10.0, 20.0, 300))
    state = json.loads(json.dumps(f.to_dict(), allow_nan=False))
    assert DemandForecaster.from_dict(state).forecast(STEP) == f.forecast(STEP)


# -- refit ------------------------------------------------------------------------------


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


# -- configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"step_s": 0.0}, "step_s has value 0.0"),
    ({"step_s": 600.0, "seasons_s": (1000.0,)}, "seasons_s has value 1000.0"),
    ({"step_s": 600.0, "quantile": 1.0}, "quantile has value 1.0"),
    ({"step_s": 600.0, "max_horizon_s": -1.0}, "max_horizon_s has value -1.0"),
])
def test_bad_settings_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DemandForecaster(**kwargs)  # type: ignore[arg-type]


def test_no_seasons_is_a_robust_damped_holt_model() -> None:
    f = DemandForecaster(STEP, seasons_s=())
    f = fed(noisy_level(50.0, 1.0, seed=16), 300, f)
    assert f.forecast(STEP).mean == pytest.approx(50.0, rel=0.05)


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
