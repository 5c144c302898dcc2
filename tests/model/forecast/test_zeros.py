"""Exact zeros in DemandForecaster (scaler/model/forecast/forecaster.py). By default a zero is
data (the service's missing readings are NaN). With ``zero_holes`` (series that write their
collection holes as zeros) a collection hole is missing data, the forecast holding its level,
for up to ``zero_forget_s``; zeros of low traffic are data.

A hole is told from demand by the count: zero arrivals are improbable at the forecast rate
(Poisson P(0) = exp(-rate x step) under 1e-3). The forecast's spread cannot tell: the bursty
series below puts zero within it, and a low-traffic series of one request a step looks steady.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from scaler.model.forecast.forecaster import DemandForecaster
from tests.model.forecast.series import STEP, STEPS_PER_DAY, bursty, fed, noisy_level

MINUTE = 60.0


def holey() -> DemandForecaster:
    """A forecaster of ``STEP``-long steps for a series whose holes are written as zeros."""
    return DemandForecaster(STEP, zero_holes=True)


def twins(series_seed: int, steps: int) -> tuple[DemandForecaster, DemandForecaster]:
    """Two forecasters of one-minute steps fed the same bursty requests/s."""
    series = bursty(series_seed)
    f, g = DemandForecaster(MINUTE, zero_holes=True), DemandForecaster(MINUTE, zero_holes=True)
    for i in range(steps):
        value = series(i * MINUTE)
        f.observe(i * MINUTE, value)
        g.observe(i * MINUTE, value)
    return f, g


# -- holes amid bursts of traffic -------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_zero_amid_bursts_of_requests_is_a_hole_not_demand(seed: int) -> None:
    n = 300
    f, g = twins(seed, n)
    f.observe(n * MINUTE, 0.0)
    g.observe(n * MINUTE, math.nan)
    assert f.forecast(MINUTE) == g.forecast(MINUTE)
    assert f.forecast(MINUTE).mean > 0.1  # a zero believed would be naive's forecast: 0
    f.observe((n + 1) * MINUTE, 3.0)
    g.observe((n + 1) * MINUTE, 3.0)
    assert f.to_dict() == g.to_dict()  # nothing of the zero was learnt


def test_an_hour_of_zeros_amid_bursts_is_still_a_hole() -> None:
    """Past an hour (when a first rule believed the outage and forecast 0) the zeros are still
    missing data: the forecast is what it would be with no readings, and when traffic comes
    back nothing of the hole has been learnt."""
    n = 300
    f, g = twins(3, n)
    for i in range(n, n + 90):
        f.observe(i * MINUTE, 0.0)
        g.observe(i * MINUTE, math.nan)
        assert f.forecast(MINUTE) == g.forecast(MINUTE)
    assert f.forecast(MINUTE).mean > 0.1
    f.observe((n + 90) * MINUTE, 3.0)
    g.observe((n + 90) * MINUTE, 3.0)
    assert f.forecast(MINUTE) == g.forecast(MINUTE)


# -- holes in steady traffic ----------------------------------------------------------


def test_half_hour_zero_hole_does_not_drop_the_forecast() -> None:
    series = noisy_level(1000.0, 20.0, seed=4)
    n = 2 * STEPS_PER_DAY
    f = fed(series, n, holey())
    for i in range(n, n + 3):  # 30 minutes of exact zeros
        f.observe(i * STEP, 0.0)
        assert f.forecast(STEP).mean > 900.0
    f = fed(series, 1, f, start=n + 3)
    assert f.forecast(STEP).mean == pytest.approx(1000.0, rel=0.05)


def test_a_long_hole_holds_the_level_and_is_recovered_from_at_once() -> None:
    """Twelve hours of zeros in traffic steady at 1,000: the forecast holds 1,000 throughout
    (a hole is missing data, whatever demand does after it), and when demand comes back at its
    old level the first reading finds the model where it was."""
    series = noisy_level(1000.0, 20.0, seed=5)
    n = 2 * STEPS_PER_DAY
    f = fed(series, n, holey())
    for i in range(n, n + STEPS_PER_DAY // 2):
        f.observe(i * STEP, 0.0)
        assert f.forecast(STEP).mean > 900.0
    f.observe((n + STEPS_PER_DAY // 2) * STEP, 1000.0)
    assert f.forecast(STEP).mean == pytest.approx(1000.0, rel=0.05)


def test_a_day_of_zeros_starts_over() -> None:
    n = 2 * STEPS_PER_DAY
    f = fed(noisy_level(1000.0, 20.0, seed=6), n, holey())
    f = fed(lambda t: 0.0, STEPS_PER_DAY + 2, f, start=n)
    fc = f.forecast(STEP)
    assert fc.mean == 0.0
    assert fc.upper == pytest.approx(0.0, abs=1e-6)


# -- zeros that are demand --------------------------------------------------------------


def rare_requests(seed: int, per_request: float = 1.0) -> Callable[[float], float]:
    """A low-traffic rate: one request (``per_request`` units) in 30 % of the steps."""
    rng = random.Random(seed)
    return lambda t: per_request * float(rng.random() < 0.3) / STEP


def test_zeros_of_a_low_traffic_series_are_real() -> None:
    f = fed(rare_requests(7), 3 * STEPS_PER_DAY, holey())  # 0.3 requests a step
    assert f.forecast(STEP).mean < 0.6 / STEP


def test_a_token_rate_counts_its_arrivals_by_arrivals_per_unit() -> None:
    tokens = 2000.0  # per request
    counted = fed(rare_requests(8, tokens), 3 * STEPS_PER_DAY,
                  DemandForecaster(STEP, arrivals_per_unit=1 / tokens, zero_holes=True))
    assert counted.forecast(STEP).mean < 0.6 * tokens / STEP
    as_requests = fed(rare_requests(8, tokens), 3 * STEPS_PER_DAY, holey())
    assert as_requests.forecast(STEP).mean > 0.9 * tokens / STEP  # 2,000 "requests" a step


# -- zeros by default: traffic that stopped ---------------------------------------------


def test_by_default_zeros_are_data_and_a_stop_is_followed() -> None:
    """The service's missing readings are NaN, so a zero there is no request: two zeros
    after a steady 1,000 req/s are a level shift (the smoother's rule), and the forecast
    follows the stop at once instead of holding 1,000 as a hole."""
    n = 2 * STEPS_PER_DAY
    f = fed(noisy_level(1000.0, 20.0, seed=5), n)
    for i in range(n, n + 2):
        f.observe(i * STEP, 0.0)
    fc = f.forecast(STEP)
    assert fc.mean == 0.0
    assert fc.upper < 500.0
