"""The weekly season (scaler/model/forecast/smoother.py): it starts from the first week's
gathered readings, so the second week already uses the first week's same phase; its memory is
bounded; and a state saved during the first week carries what was gathered."""

from __future__ import annotations

import gc
import json
import math
import random
import tracemalloc

from scaler.model.forecast.forecaster import DemandForecaster
from tests.model.forecast.series import DAY, STEP, STEPS_PER_DAY

WEEK_STEPS = 7 * STEPS_PER_DAY


def weekends_flat(seed: int) -> list[float]:
    """A daily cycle of +-300 on weekdays, +-50 on weekends (t=0 a Monday), noise 10."""
    rng = random.Random(seed)
    out = []
    for i in range(3 * WEEK_STEPS):
        t = i * STEP
        swing = 50.0 if int(t // DAY) % 7 >= 5 else 300.0
        out.append(500.0 + swing * math.sin(2 * math.pi * t / DAY) + rng.gauss(0.0, 10.0))
    return out


def second_week_mae(values: list[float], h: int, seasons_s: tuple[float, ...]) -> float:
    f = DemandForecaster(STEP, seasons_s=seasons_s)
    made: dict[int, float] = {}
    errors = []
    for i in range(2 * WEEK_STEPS):
        if i in made and i >= WEEK_STEPS:
            errors.append(abs(values[i] - made.pop(i)))
        f.observe(i * STEP, values[i])
        made[i + h] = f.forecast(h * STEP).mean
    return sum(errors) / len(errors)


def test_weekly_season_cuts_the_second_weeks_error() -> None:
    values = weekends_flat(3)
    for h, at_most in ((1, 0.97), (3, 0.9), (6, 0.8)):
        weekly = second_week_mae(values, h, (DAY, 7 * DAY))
        daily = second_week_mae(values, h, (DAY,))
        assert weekly < at_most * daily


def retained_bytes(steps: int, step_s: float = 300.0) -> int:
    """Memory held by one forecaster fed ``steps`` readings (tracemalloc)."""
    rng = random.Random(0)
    gc.collect()
    tracemalloc.start()
    try:
        f = DemandForecaster(step_s)
        for i in range(steps):
            f.observe(i * step_s, 500.0 + 100.0 * math.sin(2 * math.pi * i * step_s / DAY)
                      + rng.gauss(0.0, 10.0))
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert f.ready
    return held


def test_memory_stops_growing_after_the_kept_history() -> None:
    """Past the kept history (a week of readings) and the weekly season's first week, more
    days cost no more memory: 15 days and 22 days hold the same to within 2%."""
    day_steps = round(DAY / 300.0)
    fifteen, twenty_two = retained_bytes(15 * day_steps), retained_bytes(22 * day_steps)
    assert abs(twenty_two - fifteen) < 0.02 * fifteen
    assert fifteen < 2_000_000


def test_state_saved_in_the_first_week_keeps_what_was_gathered() -> None:
    values = weekends_flat(4)
    f = DemandForecaster(STEP)
    for i in range(4 * STEPS_PER_DAY):
        f.observe(i * STEP, values[i])
    g = DemandForecaster.from_dict(json.loads(json.dumps(f.to_dict(), allow_nan=False)))
    for i in range(4 * STEPS_PER_DAY, 9 * STEPS_PER_DAY):
        f.observe(i * STEP, values[i])
        g.observe(i * STEP, values[i])
    assert g.to_dict() == f.to_dict()
    assert f.forecast(3 * STEP) == g.forecast(3 * STEP)
    assert f._core.seasons[1].learning and f._core.seasons[1].gathered is None
