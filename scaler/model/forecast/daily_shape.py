"""The daily season re-estimated from the kept readings, its smoothing width chosen by the data.

Why: the smoother learns the daily indices through a wide kernel (``smoother.KERNEL_S``, +-50
minutes at 5-minute steps), the width that serves noisy real traffic best while a day's
profile is still mostly noise. Once days accumulate, that width blurs any sharp daily move: a
30-minute morning ramp seen on 14 identical days was still learnt as a rise starting 40
minutes early and a plateau 15% low (BENCHMARKS, "The demo"), and incremental learning cannot
sharpen it (each update is spread by the same kernel). So at each refit the kept days are
asked directly:

1. Each kept day with at least ``MIN_DAY_COVERAGE`` of its phases observed is one sample of
   the shape: its readings less the other seasons' indices, less that day's own mean.
2. The half-width is chosen by leave-one-day-out cross-validation over ``HALF_WIDTHS_S``: the
   mean of the other days, smoothed (the smoother's triangular kernel), predicts the day left
   out; the lowest mean absolute error wins. Identical days choose a narrow kernel, noisy
   days a wide one.
3. The new shape replaces the live indices only if, built without the last kept day, it
   predicts that day better than the live indices do by ``MIN_GAIN``, although the live ones
   have already learnt from that day: evidence, not preference, moves the season.

Pure numpy; a week of 5-minute readings costs a few milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from scaler.model.forecast.kernel import kernel

__all__ = ["HALF_WIDTHS_S", "MIN_DAYS", "daily_shape"]

HALF_WIDTHS_S = (0.0, 300.0, 600.0, 1200.0, 1800.0, 3000.0)
"""Candidate half-widths (seconds of phase) of the triangular kernel smoothing the shape."""
MIN_DAYS = 3
"""Complete days needed: two to choose a width from, one to check the result on."""
MIN_DAY_COVERAGE = 0.75
"""A day counts when at least this share of its phases has a reading."""
MIN_GAIN = 0.05
"""The new shape must beat the live indices on the last day by 5% of their error."""


def daily_shape(readings: Sequence[tuple[int, float]], period: int, step_s: float,
                live: Sequence[float]) -> np.ndarray | None:
    """A better daily shape than ``live`` (one index per phase), or None when none is shown.

    ``readings`` are ``(step, value)`` pairs, NaN for missing, already less the other seasons'
    indices. The result has the mean of ``live``, so the level keeps its meaning.
    """
    days = _centred_days(readings, period)
    if len(days) < MIN_DAYS:
        return None
    widths = sorted({min(round(w / step_s), period // 4) for w in HALF_WIDTHS_S})
    width = min(widths, key=lambda w: _loo_error(days[:-1], w))
    last = days[-1]
    live_arr = np.asarray(live, dtype=np.float64)
    checked = _shape(days[:-1], width)
    live_error = _mean_abs(last - (live_arr - live_arr.mean()))
    if not _mean_abs(last - checked) < (1.0 - MIN_GAIN) * live_error:
        return None
    shape: np.ndarray = _shape(days, width) + live_arr.mean()
    return shape


def _centred_days(readings: Sequence[tuple[int, float]], period: int) -> np.ndarray:
    """One row per well-covered day: the readings less the day's mean (NaN where missing)."""
    rows: dict[int, np.ndarray] = {}
    for k, x in readings:
        if math.isnan(x):
            continue
        rows.setdefault(k // period, np.full(period, np.nan))[k % period] = x
    kept = [row - np.nanmean(row) for _, row in sorted(rows.items())
            if np.count_nonzero(~np.isnan(row)) >= MIN_DAY_COVERAGE * period]
    return np.array(kept) if kept else np.empty((0, period))


def _shape(days: np.ndarray, half_width: int) -> np.ndarray:
    """The days' per-phase mean (gaps: 0), smoothed circularly, centred."""
    with np.errstate(all="ignore"):
        mean = np.nanmean(days, axis=0) if len(days) else np.zeros(days.shape[1])
    mean = np.where(np.isnan(mean), 0.0, mean)
    smooth: np.ndarray = np.zeros_like(mean)
    for offset, weight in kernel(half_width):
        smooth += weight * np.roll(mean, -offset)
    centred: np.ndarray = smooth - smooth.mean()
    return centred


def _loo_error(days: np.ndarray, half_width: int) -> float:
    """Mean absolute error of each day predicted by the others' shape at ``half_width``."""
    if len(days) < 2:
        return math.inf
    errors = [_mean_abs(days[i] - _shape(np.delete(days, i, axis=0), half_width))
              for i in range(len(days))]
    return float(np.mean(errors))


def _mean_abs(e: np.ndarray) -> float:
    finite = e[~np.isnan(e)]
    return float(np.mean(np.abs(finite))) if finite.size else math.inf
