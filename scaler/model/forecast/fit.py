"""The refit: smoothing parameters fitted by replaying the kept history.

The forecaster keeps a ``ReplayHistory`` as it observes; ``DemandForecaster.fit_params`` takes
a start from it, builds a ``Replay`` and asks ``best_params`` for the parameters.

``alpha``, ``beta``, ``phi`` and the seasonal ``gamma`` are fitted by a bounded Powell search
(scipy) minimising the mean absolute error at horizons up to ``fit_horizon_s``, replaying the
kept history (``history_s``) from a checkpoint of the live state taken at that time (a replay
from a fresh state favours parameters that repair a poor start). The last day is held out:
new parameters are kept only if they beat the current ones there by ``REFIT_MIN_GAIN``.
``fit_params()`` only reads (the service can run it in a thread), ``set_params()`` swaps the
parameters and changes nothing else, ``refit()`` does both; ``needs_refit`` is true every
``refit_every_s`` once two such days are kept after a checkpoint. A season whose period the
replay does not cover keeps its ``gamma``. On the ServeGen traces refitting barely changes the
MAE, either way (``benchmarks/forecast_accuracy.py`` shows both; see BENCHMARKS.md, section
"Forecaster design choices"): the robust parts, not the parameters, carry the accuracy.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from scipy.optimize import minimize

from scaler.model.forecast.smoother import Smoother, SmoothingParams, clip

ALPHA_BOUNDS = (0.05, 1.0)
BETA_BOUNDS = (0.0, 0.3)
PHI_BOUNDS = (0.8, 0.98)
GAMMA_BOUNDS = (0.0, 0.5)
REFIT_MIN_GAIN = 0.02
"""A refit keeps the old parameters unless the new ones cut the error on the held-out last
day by more than 2%: the error surface is flat near its minimum and the best parameters move
with the regime, so chasing in-sample gains made next-day forecasts worse, not better."""


class ReplayHistory:
    """Every step's reading (NaN when missing) over the kept history, and checkpoints of the
    live smoother, one per refit period: what a refit replays from.

    The forecaster appends to ``readings`` at every step, so that a refit in another thread
    reads one coherent copy.
    """

    __slots__ = ("checkpoints", "every", "readings")

    def __init__(self, history_steps: int, every: int) -> None:
        self.every = every  # steps between refits (and between checkpoints)
        self.readings: deque[tuple[int, float]] = deque(maxlen=history_steps)
        self.checkpoints: deque[tuple[int, Smoother]] = deque(maxlen=history_steps // every + 1)

    def take_checkpoint(self, k: int, core: Smoother, params: SmoothingParams) -> None:
        cps = self.checkpoints
        if core.ready and (not cps or k - cps[-1][0] >= self.every):
            cps.append((k, core.copy(params)))

    def start(self, params: SmoothingParams) -> tuple[int, Smoother, list[float]] | None:
        """The oldest checkpoint the history reaches back to, and the readings after it.

        The refit replays the live state from there: a replay from a fresh state would favour
        parameters that repair a poor one-day seasonal start, not those that forecast best.
        """
        history = list(self.readings)  # one coherent copy, even with observe() in another thread
        found = self.checkpoint(history)
        if found is None:
            return None
        k, core = found
        return k + 1, core.copy(params), [x for _, x in history[k + 1 - history[0][0]:]]

    def checkpoint(self, history: Sequence[tuple[int, float]] | None = None
                   ) -> tuple[int, Smoother] | None:
        """The oldest checkpoint with two refit periods of kept history after it."""
        history = history if history is not None else self.readings
        if not history:
            return None
        first_k, last_k = history[0][0], history[-1][0]
        for k, core in list(self.checkpoints):
            if k + 1 >= first_k and last_k - k >= 2 * self.every:
                return k, core
        return None


def fit_steps(fit_horizon_s: float, step_s: float) -> tuple[int, ...]:
    """The horizons (in steps) whose errors the refit minimises."""
    top = max(1, round(fit_horizon_s / step_s))
    return tuple(range(1, top + 1))


def fittable(core: Smoother, values: Sequence[float]) -> tuple[bool, ...]:
    """Which seasons' gammas the replay can tell: learning, period within the replay."""
    return tuple(s.learning and s.period <= len(values) for s in core.seasons)


@dataclass(frozen=True)
class Replay:
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


def best_params(replay: Replay, start: SmoothingParams,
                fittable: Sequence[bool]) -> SmoothingParams:
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
