"""Demand forecaster: robust damped Holt-Winters with a calibrated one-sided upper bound.

Pure: no I/O, no clock, no asyncio. The service feeds it one demand reading per step
(``observe``), asks for the demand one lead time ahead (``forecast``), refits its smoothing
parameters now and then off the event loop (``refit``) and keeps its state across restarts
(``to_dict`` / ``from_dict``, ``warm_start`` from a Prometheus range query).

Missing data
------------
* ``NaN``, infinities and negative readings are missing; a gap of several steps is walked
  through as missing steps (the level follows its damped trend, nothing is learnt).
* Exact zeros are suspect when the model expects clearly more (one-step forecast above
  ``ZERO_SIGMAS`` slow scale units): a sudden run of them is a collection hole, not demand,
  and is treated as missing for ``zero_trust_s`` (default 1 h). Past that the outage is
  believed: the mean forecast is 0 at once, while the upper bound keeps what demand would be
  if it came back now (it does, at its old level, after every hole in the traces, and that is
  what would break the SLO); the state stays frozen, so when data returns the forecast is
  right at once. After ``zero_forget_s`` (default 1 day) of zeros the model starts over. In a
  low-traffic series, where zeros are within the expected spread, zeros are plain data.
* Readings are placed on the step grid ``round(t_s / step_s)``; a second reading in a step
  already observed (or an older one) is ignored.

Refitting
---------
``alpha``, ``beta``, ``phi`` and the seasonal ``gamma`` are fitted by a bounded Powell search
(scipy) minimising the mean absolute error at horizons up to ``fit_horizon_s``, replaying the
kept history (``history_s``) from a checkpoint of the live state taken at that time (a replay
from a fresh state favours parameters that repair a poor start). The last day is held out:
new parameters are kept only if they beat the current ones there by ``REFIT_MIN_GAIN``.
``fit_params()`` only reads (the service can run it in a thread), ``set_params()`` swaps the
parameters and changes nothing else, ``refit()`` does both; ``needs_refit`` is true every
``refit_every_s`` once two such days are kept after a checkpoint. A season whose period the
replay does not cover keeps its ``gamma``. On the ServeGen traces refitting changes the MAE by
under 2% either way (the benchmark shows both): the robust parts, not the parameters, carry
the accuracy.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from scipy.optimize import minimize

from scaler.model.forecast.conformal import ConformalBound, PendingCentres, bucket_steps
from scaler.model.forecast.smoother import (
    KERNEL_S,
    MAX_KERNEL_TAPS,
    SCALE_FLOOR,
    Smoother,
    SmoothingParams,
    clip,
    kernel,
)

ZERO_SIGMAS = 3.0
"""An exact zero is suspect when the one-step forecast exceeds this many scale units."""
MAX_VALUE = 1e12
"""Readings above this (requests/s) are clipped: no fleet serves that, and it keeps the
arithmetic finite whatever a broken exporter sends."""
REFIT_MIN_GAIN = 0.02
"""A refit keeps the old parameters unless the new ones cut the error on the held-out last
day by more than 2%: the error surface is flat near its minimum and the best parameters move
with the regime, so chasing in-sample gains made next-day forecasts worse, not better."""

_FormatVersion = 1


@dataclass(frozen=True)
class Forecast:
    """Demand expected ``horizon_s`` after the last observed step (same unit as the input)."""

    mean: float
    upper: float


ALPHA_BOUNDS = (0.05, 1.0)
BETA_BOUNDS = (0.0, 0.3)
PHI_BOUNDS = (0.8, 0.98)
GAMMA_BOUNDS = (0.0, 0.5)



def _clean(value: float) -> float | None:
    """A usable reading, or None for missing (NaN, infinite, negative)."""
    if not math.isfinite(value) or value < 0.0:
        return None
    return min(value, MAX_VALUE)



class DemandForecaster:
    """Robust damped Holt-Winters demand forecaster with a calibrated upper bound.

    See the module docstring for the model. ``step_s``: the observation interval (seconds);
    ``seasons_s``: seasonal periods, each a whole number of steps (default daily and weekly);
    ``quantile``: the level of ``Forecast.upper``.
    """

    def __init__(self, step_s: float, seasons_s: Sequence[float] = (86400.0, 604800.0),
                 quantile: float = 0.95, *, max_horizon_s: float = 7200.0,
                 zero_trust_s: float = 3600.0, zero_forget_s: float = 86400.0,
                 history_s: float = 7 * 86400.0, refit_every_s: float = 86400.0,
                 fit_horizon_s: float = 1800.0) -> None:
        self._check_config(step_s, seasons_s, quantile, max_horizon_s)
        self.step_s = float(step_s)
        self.seasons_s = tuple(float(s) for s in seasons_s)
        self.quantile = float(quantile)
        self.max_horizon_s = float(max_horizon_s)
        self.zero_trust_s = float(zero_trust_s)
        self.zero_forget_s = float(zero_forget_s)
        self.history_s = float(history_s)
        self.refit_every_s = float(refit_every_s)
        self.fit_horizon_s = float(fit_horizon_s)
        self._periods = tuple(round(s / self.step_s) for s in self.seasons_s)
        taps = min(MAX_KERNEL_TAPS, round(KERNEL_S / self.step_s))
        self._kernels = tuple(kernel(min(taps, p // 4)) for p in self._periods)
        self._buckets = bucket_steps(max(1, math.ceil(self.max_horizon_s / self.step_s - 1e-9)))
        self._params = SmoothingParams(gammas=(0.05,) * len(self._periods))
        self._reset_state()

    @staticmethod
    def _check_config(step_s: float, seasons_s: Sequence[float], quantile: float,
                      max_horizon_s: float) -> None:
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

    def _reset_state(self) -> None:
        self._core = Smoother(self._periods, self._kernels, self._params)
        self._bound = ConformalBound(self._buckets, self.quantile)
        self._last_k: int | None = None
        self._zero_run = 0
        # (step, reading or NaN) for every step, so a refit in a thread reads a coherent copy
        self._history: deque[tuple[int, float]] = deque(
            maxlen=max(2, round(self.history_s / self.step_s)))
        history_steps = self._history.maxlen or 2
        self._checkpoints: deque[tuple[int, Smoother]] = deque(
            maxlen=history_steps // self._refit_every_steps() + 1)
        self._last_refit_k: int | None = None

    # -- public API -----------------------------------------------------------------------

    @property
    def params(self) -> SmoothingParams:
        return self._params

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
        mean = core.mean_at(self._last_k, m)
        upper = mean + max(core.last_resid, 0.0) + core.scale() * self._bound.z_at(m)
        if self._in_outage():
            mean = 0.0
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
        every = self._refit_every_steps()
        if self._last_refit_k is not None and self._last_k - self._last_refit_k < every:
            return False
        return self._replay_checkpoint() is not None

    def fit_params(self) -> SmoothingParams:
        """Best parameters on the kept history (reads only; safe off the event loop)."""
        start = self._replay_start()
        if start is None:
            return self._params
        k0, core, values = start
        holdout = len(values) - self._refit_every_steps()
        return _fit(_Replay(k0, values, core, self._fit_steps(), holdout), self._params,
                    self._fittable(core, values[:holdout]))

    def set_params(self, params: SmoothingParams) -> None:
        """Swap the smoothing parameters (nothing else changes)."""
        if len(params.gammas) != len(self._periods):
            raise ValueError(f"params has {len(params.gammas)} gammas for "
                             f"{len(self._periods)} seasons.")
        self._params = params
        self._core.params = params
        self._last_refit_k = self._last_k

    def refit(self) -> None:
        """Refit the smoothing parameters on the kept history."""
        self.set_params(self.fit_params())

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
        for j in range(max(0, n - (self._history.maxlen or 0)), n):
            self._history.append((self._last_k + 1 + j, math.nan))
        self._core.skip_many(n)
        self._last_k += n

    def _screen(self, x: float | None) -> float | None:
        """Exact zeros where clearly more is expected are suspect (see module docstring)."""
        if x is None:
            return None
        if x != 0.0 or not self._zero_is_suspect():
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
        expected = core.predict(self._last_k, 1)
        return expected > ZERO_SIGMAS * max(core.scale_slow, SCALE_FLOOR)

    def _forget(self) -> None:
        """A day of zeros: start over (the parameters are kept)."""
        last_k = self._last_k
        self._reset_state()
        self._last_k = last_k

    def _in_outage(self) -> bool:
        return self._zero_run * self.step_s > self.zero_trust_s

    def _step(self, k: int, x: float | None) -> None:
        core = self._core
        if x is None:
            core.skip()
        else:
            self._bound.score(k, x)
            core.update(k, x)
        self._history.append((k, math.nan if x is None else x))
        self._last_k = k
        self._bound.record(k, core)
        self._take_checkpoint(k)

    # -- refit helpers --------------------------------------------------------------------

    def _refit_every_steps(self) -> int:
        return max(1, round(self.refit_every_s / self.step_s))

    def _replay_start(self) -> tuple[int, Smoother, list[float]] | None:
        """The oldest checkpoint the history reaches back to, and the readings after it.

        The refit replays the live state from there: a replay from a fresh state would favour
        parameters that repair a poor one-day seasonal start, not those that forecast best.
        """
        history = list(self._history)  # one coherent copy, even with observe() in another thread
        found = self._replay_checkpoint(history)
        if found is None:
            return None
        k, core = found
        return k + 1, core.copy(self._params), [x for _, x in history[k + 1 - history[0][0]:]]

    def _replay_checkpoint(self, history: Sequence[tuple[int, float]] | None = None
                           ) -> tuple[int, Smoother] | None:
        """The oldest checkpoint with two refit periods of kept history after it."""
        history = history if history is not None else self._history
        if not history:
            return None
        first_k, last_k = history[0][0], history[-1][0]
        for k, core in list(self._checkpoints):
            if k + 1 >= first_k and last_k - k >= 2 * self._refit_every_steps():
                return k, core
        return None

    def _take_checkpoint(self, k: int) -> None:
        cps = self._checkpoints
        if self._core.ready and (not cps or k - cps[-1][0] >= self._refit_every_steps()):
            cps.append((k, self._core.copy(self._params)))

    def _fit_steps(self) -> tuple[int, ...]:
        top = max(1, round(self.fit_horizon_s / self.step_s))
        return tuple(range(1, top + 1))

    @staticmethod
    def _fittable(core: Smoother, values: Sequence[float]) -> tuple[bool, ...]:
        """Which seasons' gammas the replay can tell: learning, period within the replay."""
        return tuple(s.learning and s.period <= len(values) for s in core.seasons)

    # -- persistence ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The whole state as JSON-safe data (no NaN: missing values are None)."""
        return {
            "version": _FormatVersion,
            "config": self._config_dict(),
            "params": {"alpha": self._params.alpha, "beta": self._params.beta,
                       "phi": self._params.phi, "gammas": list(self._params.gammas)},
            "core": _core_to_dict(self._core),
            "windows": [list(w.order) for w in self._bound.windows],
            "ring": [None if s is None else [s.k, s.centres, s.scale] for s in self._bound.ring],
            "last_k": self._last_k,
            "zero_run": self._zero_run,
            "history": [[k, None if math.isnan(x) else x] for k, x in self._history],
            "last_refit_k": self._last_refit_k,
            "checkpoints": [[k, _core_to_dict(c)] for k, c in self._checkpoints],
        }

    def _config_dict(self) -> dict[str, Any]:
        return {"step_s": self.step_s, "seasons_s": list(self.seasons_s),
                "quantile": self.quantile, "max_horizon_s": self.max_horizon_s,
                "zero_trust_s": self.zero_trust_s, "zero_forget_s": self.zero_forget_s,
                "history_s": self.history_s, "refit_every_s": self.refit_every_s,
                "fit_horizon_s": self.fit_horizon_s}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DemandForecaster:
        """Rebuild a forecaster saved by ``to_dict``."""
        if d.get("version") != _FormatVersion:
            raise ValueError(f"forecaster state has version {d.get('version')!r}. "
                             f"Expected {_FormatVersion}.")
        cfg = d["config"]
        f = cls(cfg["step_s"], tuple(cfg["seasons_s"]), cfg["quantile"],
                max_horizon_s=cfg["max_horizon_s"], zero_trust_s=cfg["zero_trust_s"],
                zero_forget_s=cfg["zero_forget_s"], history_s=cfg["history_s"],
                refit_every_s=cfg["refit_every_s"], fit_horizon_s=cfg["fit_horizon_s"])
        p = d["params"]
        f._params = SmoothingParams(p["alpha"], p["beta"], p["phi"], tuple(p["gammas"]))
        f._core = _core_from_dict(d["core"], f._periods, f._kernels, f._params)
        for window, zs in zip(f._bound.windows, d["windows"], strict=True):
            window.order = deque(float(z) for z in zs)
            window.sorted = sorted(window.order)
        f._bound.ring = [None if s is None else PendingCentres(int(s[0]), [float(c) for c in s[1]],
                                                    float(s[2])) for s in d["ring"]]
        f._last_k, f._zero_run = d["last_k"], int(d["zero_run"])
        f._history.extend((int(k), math.nan if x is None else float(x)) for k, x in d["history"])
        f._last_refit_k = d["last_refit_k"]
        f._checkpoints.extend((int(k), _core_from_dict(c, f._periods, f._kernels, f._params))
                              for k, c in d["checkpoints"])
        return f


def _safe_forecast(mean: float, upper: float) -> Forecast:
    """Never negative, never NaN or infinite; upper never below mean."""
    mean = clip(mean, 0.0, MAX_VALUE) if math.isfinite(mean) else 0.0
    upper = clip(upper, mean, 2 * MAX_VALUE) if math.isfinite(upper) else max(mean, 0.0)
    return Forecast(mean, upper)


def _core_to_dict(core: Smoother) -> dict[str, Any]:
    return {
        "level": core.level, "trend": core.trend, "ready": core.ready,
        "first": [[k, x] for k, x in core.first], "first_k": core.first_k,
        "scale_slow": core.scale_slow, "scale_fast": core.scale_fast, "run": core.run,
        "last_resid": core.last_resid,
        "seasons": [{"values": s.values, "learning": s.learning} for s in core.seasons],
    }


def _core_from_dict(d: dict[str, Any], periods: Sequence[int],
                    kernels: Sequence[tuple[tuple[int, float], ...]],
                    params: SmoothingParams) -> Smoother:
    core = Smoother(periods, kernels, params)
    core.level = None if d["level"] is None else float(d["level"])
    core.trend, core.ready = float(d["trend"]), bool(d["ready"])
    core.first = [(int(k), float(x)) for k, x in d["first"]]
    core.first_k = d["first_k"]
    core.scale_slow, core.scale_fast = float(d["scale_slow"]), float(d["scale_fast"])
    core.run, core.last_resid = int(d["run"]), float(d["last_resid"])
    for season, s in zip(core.seasons, d["seasons"], strict=True):
        season.values = [float(v) for v in s["values"]]
        season.learning = bool(s["learning"])
    return core


# -- refit ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Replay:
    """What a refit replays: readings from step ``k0`` on, from the checkpoint ``base``.

    Errors before ``holdout`` (an index into ``values``) are what the search minimises; the
    errors after it decide whether the result is kept.
    """

    k0: int
    values: Sequence[float]
    base: Smoother
    steps: Sequence[int]
    holdout: int

    def errors(self, params: SmoothingParams) -> tuple[float, float]:
        """Mean absolute error at ``steps`` ahead before and after ``holdout``."""
        core = self.base.copy(params)
        steps, top = self.steps, max(self.steps)
        pending: list[list[float] | None] = [None] * (top + 1)
        sums, counts = [0.0, 0.0], [0, 0]
        for i, x in enumerate(self.values):
            k = self.k0 + i
            if math.isnan(x):
                core.skip()
            else:
                part = 0 if i < self.holdout else 1
                for j, m in enumerate(steps):
                    made = pending[(k - m) % (top + 1)]
                    if made is not None:
                        sums[part] += abs(x - made[j])
                        counts[part] += 1
                core.update(k, x)
            pending[k % (top + 1)] = [core.predict(k, m) for m in steps] if core.ready else None
        fit, held = (s / c if c else math.inf for s, c in zip(sums, counts, strict=True))
        return fit, held


def _fit(replay: _Replay, start: SmoothingParams, fittable: Sequence[bool]) -> SmoothingParams:
    """Bounded Powell search over alpha, beta, phi and the gammas the replay can tell; the
    result is kept only if it also beats ``start`` on the held-out last part."""
    full = start.as_vector()
    all_bounds = [ALPHA_BOUNDS, BETA_BOUNDS, PHI_BOUNDS] + [GAMMA_BOUNDS] * len(start.gammas)
    free = [i for i in range(len(full)) if i < 3 or fittable[i - 3]]
    bounds = [all_bounds[i] for i in free]

    def params_of(v: Sequence[float]) -> SmoothingParams:
        vector = list(full)
        for i, x, (lo, hi) in zip(free, v, bounds, strict=True):
            vector[i] = clip(float(x), lo, hi)
        return SmoothingParams.from_vector(vector)

    def loss(v: Sequence[float]) -> float:
        return replay.errors(params_of(v))[0]

    x0 = [clip(full[i], lo, hi) for i, (lo, hi) in zip(free, bounds, strict=True)]
    if not math.isfinite(loss(x0)):
        return start
    result = minimize(loss, x0, method="Powell", bounds=bounds,
                      options={"maxfev": 150, "xtol": 1e-2, "ftol": 1e-3})
    best = params_of(result.x)
    held_best, held_start = replay.errors(best)[1], replay.errors(start)[1]
    keep = math.isfinite(held_best) and held_best < (1.0 - REFIT_MIN_GAIN) * held_start
    return best if keep else start
