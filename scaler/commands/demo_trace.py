"""The demo's workload: a week of the same day, then the hour the demo plays.

Why a made-up day rather than a real trace: the demo has one minute to show what the
forecast buys, so its hour must hold the moments that tell policies apart: a flat stretch
(a policy that moves there is thrashing), the morning ramp every day has at the same time (a
forecaster that learnt the week sees it coming; nodes take minutes, so only it can have
them ready), and a burst no history announces (nobody sees it coming; both can only react).

Every day is the same: ``BASE_RATE`` req/s until the ramp, up to ``PEAK_RATE`` over
``RAMP_S``, back down in the evening; each minute has its own lognormal noise (``NOISE``). The
played hour begins at ``START_S`` (08:25) of the last day; ``BURST`` multiplies a few minutes
of that hour only, in the flat stretch before the ramp: there the fleet's node has room for
the replicas it needs, so the burst shows how each side reacts. On the plateau the same burst
needs another node, which takes longer than the burst lasts: which side weathers it then
depends on how many spare GPUs it happened to hold, not on forecasting (measured in
BENCHMARKS, "The demo"). The history is what Prometheus would hold of the days before: their rate,
one point per forecaster step (5 minutes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scaler.sim.traces import RateTrace

__all__ = ["BASE_RATE", "BURST", "PEAK_RATE", "RAMP_AT_S", "RAMP_S", "START_S", "DemoDay",
           "demo_day"]

DAY_S = 86400.0
STEP_S = 60.0
BASE_RATE = 60.0  # req/s: about 3 replicas of the default profile
PEAK_RATE = 300.0  # req/s: about 10 replicas, more than one 8-GPU node holds
START_S = 8 * 3600.0 + 25 * 60.0  # the played hour starts at 08:25
RAMP_AT_S = 8 * 3600.0 + 45 * 60.0  # every day's ramp starts at 08:45 ...
RAMP_S = 30 * 60.0  # ... and is at the peak 30 minutes later
EVENING_AT_S = 18 * 3600.0
NOISE = 0.05  # sigma of the per-minute lognormal noise
BURST = (8 * 3600.0 + 36 * 60.0, 3 * 60.0, 1.25)  # 08:36, 3 minutes, x1.25: this day only
HISTORY_DAYS = 14
PROMPT_TOKENS = 600.0
OUTPUT_TOKENS = 200.0


@dataclass(frozen=True)
class DemoDay:
    """The played slice (times from 0) and the history before it (times end at 0)."""

    played: RateTrace
    history_times_s: tuple[float, ...]  # the end of each step, seconds from the played slice
    history_rates: tuple[float, ...]  # req/s, one per forecaster step


def day_rate(t_of_day_s: float) -> float:
    """The noiseless rate at a time of day: flat, the ramp, the plateau, the evening."""
    if t_of_day_s < RAMP_AT_S:
        return BASE_RATE
    if t_of_day_s < RAMP_AT_S + RAMP_S:
        return BASE_RATE + (PEAK_RATE - BASE_RATE) * (t_of_day_s - RAMP_AT_S) / RAMP_S
    if t_of_day_s < EVENING_AT_S:
        return PEAK_RATE
    if t_of_day_s < EVENING_AT_S + 3600.0:
        return PEAK_RATE - (PEAK_RATE - BASE_RATE) * (t_of_day_s - EVENING_AT_S) / 3600.0
    return BASE_RATE


def demo_day(seed: int, duration_s: float, *, flat: bool = False,
             history_step_s: float = 300.0) -> DemoDay:
    """``duration_s`` from 08:25 of day ``HISTORY_DAYS + 1``, and the days before as history.

    ``flat``: every minute at ``BASE_RATE`` (noise kept, no ramp, no burst), for showing a
    policy holds still when nothing changes.
    """
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be a finite number > 0, got {duration_s!r}")
    begin = HISTORY_DAYS * DAY_S + START_S
    n = math.ceil((begin + duration_s) / STEP_S)
    start = np.arange(n, dtype=np.float64) * STEP_S
    rng = np.random.default_rng(seed)
    shape = np.array([BASE_RATE if flat else day_rate((t + STEP_S / 2) % DAY_S)
                      for t in start])
    rate = shape * np.exp(rng.normal(0.0, NOISE, n))
    history_rates = _steps(rate[: int(begin // STEP_S)], round(history_step_s / STEP_S))
    # as Prometheus labels rate(x[5m]): each step's rate at the end of the step
    history_times = tuple(-begin + (k + 1) * history_step_s for k in range(len(history_rates)))
    first = int(begin // STEP_S)
    played = rate[first:].copy()
    at, length, factor = BURST
    if not flat:
        minutes = start[first:] - HISTORY_DAYS * DAY_S
        played[(minutes >= at) & (minutes < at + length)] *= factor
    m = len(played)
    name = "demo day" + (" (flat)" if flat else "") + f" seed={seed} 08:25+{duration_s / 60:g}min"
    trace = RateTrace(name, STEP_S, start[first:] - begin, played,
                      np.full(m, PROMPT_TOKENS), np.full(m, OUTPUT_TOKENS))
    return DemoDay(trace, history_times, tuple(history_rates))


def _steps(rate: np.ndarray, per_step: int) -> list[float]:
    """Means of whole groups of ``per_step`` minutes (what a 5-minute rate query gives)."""
    whole = len(rate) // per_step * per_step
    return [float(v) for v in rate[:whole].reshape(-1, per_step).mean(axis=1)]
