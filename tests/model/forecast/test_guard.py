"""The naive guard (scaler/model/forecast/guard.py), through DemandForecaster: it falls back to
the last value where the model is worse than it, and keeps the model where it is better."""

from __future__ import annotations

import random
from collections.abc import Callable

from scaler.model.forecast.forecaster import DemandForecaster
from tests.model.forecast.series import STEP, STEPS_PER_DAY, sine


def mae(series: Callable[[int], float], steps: int, h: int, *, guard: bool = True
        ) -> tuple[float, float, DemandForecaster]:
    """Mean absolute error of the forecaster's mean ``h`` steps ahead, and naive's, over
    every target after the third day."""
    f = DemandForecaster(STEP, guard=guard)
    made: dict[int, tuple[float, float]] = {}
    ours: list[float] = []
    naive: list[float] = []
    for i in range(steps):
        x = series(i)
        if i in made and i >= 3 * STEPS_PER_DAY:
            mean, last = made.pop(i)
            ours.append(abs(x - mean))
            naive.append(abs(x - last))
        f.observe(i * STEP, x)
        made[i + h] = (f.forecast(h * STEP).mean, x)
    return sum(ours) / len(ours), sum(naive) / len(naive), f


def random_walk(seed: int, steps: int) -> list[float]:
    rng = random.Random(seed)
    walk = [1000.0]
    for _ in range(steps):
        walk.append(max(1.0, walk[-1] + rng.gauss(0.0, 30.0)))
    return walk


def test_guard_falls_back_to_naive_on_a_random_walk() -> None:
    """A random walk has no daily season: the one the model learns from its first day is
    noise, and without the guard the model is worse than the last value; with it, it is not."""
    steps = 8 * STEPS_PER_DAY
    walk = random_walk(1, steps)
    for h in (1, 3):
        guarded, naive, f = mae(walk.__getitem__, steps, h)
        unguarded, _, _ = mae(walk.__getitem__, steps, h, guard=False)
        assert unguarded > 1.03 * naive
        assert guarded <= 1.005 * naive
        assert f._guard.weight_at(h) < 0.5


def test_guard_keeps_the_model_on_a_strong_daily_cycle() -> None:
    rng = random.Random(2)
    noise = [rng.gauss(0.0, 20.0) for _ in range(6 * STEPS_PER_DAY)]
    series = lambda i: sine(i * STEP) + noise[i]  # noqa: E731
    for h in (1, 3):
        guarded, naive, f = mae(series, 6 * STEPS_PER_DAY, h)
        unguarded, _, _ = mae(series, 6 * STEPS_PER_DAY, h, guard=False)
        assert f._guard.weight_at(h) > 0.9
        assert guarded <= 1.01 * unguarded
        assert guarded < 0.9 * naive
