"""Synthetic demand series with known answers, and a forecaster fed with them: shared by the
forecaster's tests."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from scaler.model.forecast.forecaster import DemandForecaster

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


def bursty(seed: int = 0, median: float = 2.0) -> Callable[[float], float]:
    """Requests/s swinging tenfold from one reading to the next (log-normal around
    ``median``), like a coding assistant's minutes: hundreds of requests a minute, never none."""
    rng = random.Random(seed)
    return lambda t: median * math.exp(rng.gauss(0.0, 1.0))
