"""The demand forecaster the service and the replay use: the smoother, the bound and the refit
(see the package docstring) behind one object.

Pure: no I/O, no clock, no asyncio. The service feeds it one demand reading per step
(``observe``), asks for the demand one lead time ahead (``forecast``), refits its smoothing
parameters now and then off the event loop (``refit``) and keeps its state across restarts
(``to_dict`` / ``from_dict``, ``warm_start`` from a Prometheus range query).

Missing data
------------
* ``NaN``, infinities and negative readings are missing; a gap of several steps is walked
  through as missing steps (the level follows its damped trend, nothing is learnt).
* An exact zero is data: no request arrived. In the service a reading is a rate of pods'
  counters, and a pod that cannot be read gives no reading (NaN), never 0; there a run of
  zeros is traffic that stopped, and after a sudden stop the forecast must let capacity go
  (with zeros taken for holes, a workload whose history began in working hours kept its
  day's replicas all night, every night: ``tests/model/test_predictive.py``).
* Some series write their collection holes as zeros (the ServeGen traces). With
  ``zero_holes`` (what ``benchmarks/forecast_accuracy.py`` feeds them with), an exact zero
  is a collection hole, not demand, when zero arrivals are improbable. The
  readings are rates of arrivals (requests/s; ``arrivals_per_unit`` converts another unit,
  e.g. 1 / mean tokens per request for a token rate), so the one-step forecast times
  ``step_s`` is the count of arrivals expected in the step, and Poisson arrivals at that
  rate give none with probability ``exp(-count)``: under ``ZERO_PROBABILITY`` (more than
  about 7 arrivals expected) the zero is suspect. The forecast's spread is no test: after
  bursts of hundreds of requests a minute an exact zero lies within it, yet no lull of real
  traffic at that level empties a whole step; and a low-traffic series can look steady
  (one request a step) while its zeros are real. Real traffic is burstier than Poisson, so
  some real zeros are taken for holes: the safe error, as the forecast then holds its level
  (no scale-down).
* A suspect zero and the zeros that follow it are missing (nothing is learnt, the forecast
  holds its level) for up to ``zero_forget_s`` (default 1 day); past that the model starts
  over. (A first rule believed the outage after an hour and forecast a mean of 0. On the
  tuning series, where demand comes back at its old level after each hole, it cost 1 % of
  MAE on the first days and 1 % on the 14 days; on m-mid, held out, where demand came back
  low after its long holes, it had been worth 2-4 %. The tuning series decides; see
  BENCHMARKS.md, "Pooling the prior with the conformal quantile".) In a low-traffic series
  (a few arrivals expected a step) zeros are plain data.
* Readings are placed on the step grid ``round(t_s / step_s)``; a second reading in a step
  already observed (or an older one) is ignored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from scaler.model.forecast.conformal import ConformalBound, bucket_steps
from scaler.model.forecast.fit import Replay, ReplayHistory, best_params, fit_steps, fittable
from scaler.model.forecast.guard import NaiveGuard
from scaler.model.forecast.kernel import kernel
from scaler.model.forecast.smoother import (
    KERNEL_S,
    MAX_KERNEL_TAPS,
    Smoother,
    SmoothingParams,
    clip,
)
from scaler.model.forecast.state import forecaster_from_dict, forecaster_to_dict

ZERO_PROBABILITY = 1e-3
"""An exact zero is suspect when Poisson arrivals at the forecast rate give none in a step
with a probability under this (more than ``ZERO_COUNT`` arrivals expected)."""
ZERO_COUNT = -math.log(ZERO_PROBABILITY)
MAX_VALUE = 1e12
"""Readings above this (requests/s) are clipped: no fleet serves that, and it keeps the
arithmetic finite whatever a broken exporter sends."""


@dataclass(frozen=True)
class Forecast:
    """Demand expected ``horizon_s`` after the last observed step (same unit as the input)."""

    mean: float
    upper: float


def _clean(value: float) -> float | None:
    """A usable reading, or None for missing (NaN, infinite, negative)."""
    if not math.isfinite(value) or value < 0.0:
        return None
    return min(value, MAX_VALUE)


class DemandForecaster:
    """Robust damped Holt-Winters demand forecaster with a calibrated upper bound.

    See the package docstring for the parts. ``step_s``: the observation interval (seconds);
    ``seasons_s``: seasonal periods, each a whole number of steps (default daily and weekly);
    ``quantile``: the level of ``Forecast.upper``; ``guard``: blend the mean with the last
    value per horizon (``guard.py``; off only to measure what it does); ``arrivals_per_unit``:
    the arrivals per second one unit of the reading stands for (1 for a request rate, what the
    service and the replay feed; 1 / mean tokens per request for a token rate), which tells an
    exact zero that cannot be traffic from one that can (module docstring); ``zero_holes``:
    the series writes its collection holes as zeros (trace data; off for the service, whose
    missing readings are NaN), so an improbable zero is a hole (module docstring).

    Memory per workload at 5-minute steps, measured with tracemalloc after 15 days: about
    760 KiB, flat from then on (the week of kept readings, the refit's checkpoints and the
    bound's error windows; the weekly season's share is 16 KiB).
    """

    def __init__(self, step_s: float, seasons_s: Sequence[float] = (86400.0, 604800.0),
                 quantile: float = 0.95, *, max_horizon_s: float = 7200.0,
                 zero_forget_s: float = 86400.0,
                 history_s: float = 7 * 86400.0, refit_every_s: float = 86400.0,
                 fit_horizon_s: float = 1800.0, guard: bool = True,
                 arrivals_per_unit: float = 1.0, zero_holes: bool = False) -> None:
        _check_config(step_s, seasons_s, quantile, max_horizon_s, arrivals_per_unit)
        self.step_s = float(step_s)
        self.seasons_s = tuple(float(s) for s in seasons_s)
        self.quantile = float(quantile)
        self.max_horizon_s = float(max_horizon_s)
        self.zero_forget_s = float(zero_forget_s)
        self.history_s = float(history_s)
        self.refit_every_s = float(refit_every_s)
        self.fit_horizon_s = float(fit_horizon_s)
        self.guard = bool(guard)
        self.arrivals_per_unit = float(arrivals_per_unit)
        self.zero_holes = bool(zero_holes)
        self._periods = tuple(round(s / self.step_s) for s in self.seasons_s)
        taps = min(MAX_KERNEL_TAPS, round(KERNEL_S / self.step_s))
        self._kernels = tuple(kernel(min(taps, p // 4)) for p in self._periods)
        self._buckets = bucket_steps(max(1, math.ceil(self.max_horizon_s / self.step_s - 1e-9)))
        self._params = SmoothingParams(gammas=(0.05,) * len(self._periods))
        self._reset_state()

    def _reset_state(self) -> None:
        self._core = Smoother(self._periods, self._kernels, self._params)
        self._bound = ConformalBound(self._buckets, self.quantile)
        self._guard = NaiveGuard(self._buckets, self.step_s)
        self._naive: float | None = None  # the last usable reading
        self._last_k: int | None = None
        self._zero_run = 0
        self._replay = ReplayHistory(max(2, round(self.history_s / self.step_s)),
                                     max(1, round(self.refit_every_s / self.step_s)))
        self._last_refit_k: int | None = None

    # -- public API -----------------------------------------------------------------------

    @property
    def params(self) -> SmoothingParams:
        return self._params

    @property
    def ready(self) -> bool:
        """It has a level to forecast from: one whole step of demand seen (or warm-started).
        Before that ``forecast`` answers 0, which must not be read as "no demand"."""
        return self._core.level is not None and self._last_k is not None

    def observe(self, t_s: float, value: float) -> None:
        """One reading at time ``t_s`` (seconds); NaN (or inf, or negative) is missing."""
        t_s = float(t_s)
        if not math.isfinite(t_s):
            return
        k = round(t_s / self.step_s)
        if self._last_k is not None:
            if k <= self._last_k:
                return
            self._walk_gap(k)
        x = self._screen(_clean(float(value)))
        self._step(k, x)

    def forecast(self, horizon_s: float) -> Forecast:
        """Mean and upper quantile of demand ``horizon_s`` after the last observed step.

        Horizons under one step are answered for the next step.
        """
        core = self._core
        if core.level is None or self._last_k is None:
            return Forecast(0.0, 0.0)
        m = max(1.0, horizon_s / self.step_s) if math.isfinite(horizon_s) else 1.0
        model = core.mean_at(self._last_k, m)
        naive = model if self._naive is None else self._naive
        if not core.ready:  # first day: the level draws the band only (smoother.py)
            mean = naive
        else:
            w = self._guard.weight_at(m) if self.guard else 1.0
            mean = naive + w * (model - naive)
        upper = model + max(core.last_resid, 0.0) + core.scale() * self._bound.z_at(m)
        return _safe_forecast(mean, upper)

    def warm_start(self, times_s: Iterable[float], values: Iterable[float]) -> None:
        """Observe a history (e.g. a Prometheus range query), in time order."""
        for t, v in zip(times_s, values, strict=True):
            self.observe(t, v)

    @property
    def needs_refit(self) -> bool:
        """True when a refit is due: ``refit_every_s`` since the last one (or none yet) and at
        least twice that much data kept after a checkpoint of the state to replay from."""
        if self._last_k is None:
            return False
        every = self._replay.every
        if self._last_refit_k is not None and self._last_k - self._last_refit_k < every:
            return False
        return self._replay.checkpoint() is not None

    def fit_params(self) -> SmoothingParams:
        """Best parameters on the kept history (reads only; safe off the event loop)."""
        start = self._replay.start(self._params)
        if start is None:
            return self._params
        k0, core, values = start
        holdout = len(values) - self._replay.every
        steps = fit_steps(self.fit_horizon_s, self.step_s)
        return best_params(Replay(k0, values, core, steps, holdout), self._params,
                           fittable(core, values[:holdout]))

    def set_params(self, params: SmoothingParams) -> None:
        """Swap the smoothing parameters (nothing else changes)."""
        if len(params.gammas) != len(self._periods):
            raise ValueError(f"params has {len(params.gammas)} gammas for "
                             f"{len(self._periods)} seasons.")
        self._params = params
        self._core.params = params
        self._last_refit_k = self._last_k

    def refit(self, params: SmoothingParams | None = None) -> None:
        """Refit: the smoothing parameters (``params`` when fitted elsewhere, e.g. by
        ``fit_params`` on a copy in a thread), then the daily shape from the kept readings
        (``daily_shape.py``; on the live state, a few milliseconds)."""
        self.set_params(self.fit_params() if params is None else params)
        if self._last_k is not None:
            self._core.reshape_first_season(list(self._replay.readings), self.step_s,
                                            self._last_k)

    # -- observation path -----------------------------------------------------------------

    def _walk_gap(self, k: int) -> None:
        """Steps between the last observation and ``k`` are missing."""
        assert self._last_k is not None
        missing = k - self._last_k - 1
        walked = min(missing, len(self._bound.ring))
        if missing > walked:
            self._skip_many(missing - walked)
        for j in range(k - walked, k):
            self._step(j, None)

    def _skip_many(self, n: int) -> None:
        """A long gap at once: damped trend, history padded, no forecasts recorded."""
        assert self._last_k is not None
        readings = self._replay.readings
        for j in range(max(0, n - (readings.maxlen or 0)), n):
            readings.append((self._last_k + 1 + j, math.nan))
        self._core.skip_many(n)
        self._last_k += n

    def _screen(self, x: float | None) -> float | None:
        """With ``zero_holes``, exact zeros where zero arrivals are improbable are suspect
        (module docstring)."""
        if x is None:
            return None
        if x != 0.0 or not self.zero_holes or not self._zero_is_suspect():
            self._zero_run = 0
            return x
        self._zero_run += 1
        if self._zero_run * self.step_s > self.zero_forget_s:
            self._forget()
            return x
        return None

    def _zero_is_suspect(self) -> bool:
        if self._zero_run > 0:
            return True
        core = self._core
        if core.level is None or self._last_k is None:
            return False
        count = core.predict(self._last_k, 1) * self.step_s * self.arrivals_per_unit
        return count > ZERO_COUNT

    def _forget(self) -> None:
        """A day of zeros: start over (the parameters are kept)."""
        last_k = self._last_k
        self._reset_state()
        self._last_k = last_k

    def _step(self, k: int, x: float | None) -> None:
        core = self._core
        if x is None:
            core.skip()
        else:
            self._guard.score(k, x)
            self._bound.score(k, x)
            core.update(k, x)
            self._naive = x
        self._replay.readings.append((k, math.nan if x is None else x))
        self._last_k = k
        self._record(k)
        self._replay.take_checkpoint(k, core, self._params)

    def _record(self, k: int) -> None:
        """The forecasts made at step ``k``, per bucket, for the guard and the bound to score:
        the model's means, and the band centres (mean plus burst) as ``forecast`` draws them."""
        core, naive = self._core, self._naive
        if core.level is None or core.scale_slow <= 0.0 or naive is None:
            self._guard.record(k, None, None)
            self._bound.record(k, None, 0.0)
            return
        scale = core.scale()
        means = [core.predict(k, m) for m in self._buckets]
        self._guard.record(k, naive, means if core.ready else [naive] * len(means))
        burst = max(core.last_resid, 0.0)
        self._bound.record(k, [mu + burst for mu in means], scale)

    # -- persistence ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The whole state as JSON-safe data (no NaN: missing values are None)."""
        return forecaster_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DemandForecaster:
        """Rebuild a forecaster saved by ``to_dict``."""
        return forecaster_from_dict(cls, d)


def _safe_forecast(mean: float, upper: float) -> Forecast:
    """Never negative, never NaN or infinite; upper never below mean."""
    mean = clip(mean, 0.0, MAX_VALUE) if math.isfinite(mean) else 0.0
    upper = clip(upper, mean, 2 * MAX_VALUE) if math.isfinite(upper) else max(mean, 0.0)
    return Forecast(mean, upper)


def _check_config(step_s: float, seasons_s: Sequence[float], quantile: float,
                  max_horizon_s: float, arrivals_per_unit: float) -> None:
    if not (math.isfinite(step_s) and step_s > 0):
        raise ValueError(f"step_s has value {step_s!r}. Must be a positive number of seconds.")
    for s in seasons_s:
        ratio = s / step_s
        if not (math.isfinite(ratio) and ratio >= 2 and abs(ratio - round(ratio)) < 1e-6):
            raise ValueError(f"seasons_s has value {s!r}. Must be a whole number (>= 2) of "
                             f"steps of {step_s!r} s.")
    if not 0.5 <= quantile < 1.0:
        raise ValueError(f"quantile has value {quantile!r}. Must be in [0.5, 1).")
    if not (math.isfinite(max_horizon_s) and max_horizon_s > 0):
        raise ValueError(f"max_horizon_s has value {max_horizon_s!r}. Must be positive.")
    if not (math.isfinite(arrivals_per_unit) and arrivals_per_unit > 0):
        raise ValueError(f"arrivals_per_unit has value {arrivals_per_unit!r}. Must be a positive "
                         "number (arrivals per second one unit of the reading stands for).")
