"""Forecast accuracy of scaler.model.forecast against three baselines, on every rate trace.

    python benchmarks/forecast_accuracy.py          # needs: pip install -e '.[bench]'

For each rate series in ../shared/traces/ (the ServeGen CSVs: requests/s every 600 s) and each
horizon of 1, 2 and 3 steps (10, 20, 30 minutes): rolling-origin evaluation over the whole
series after a two-day warm-up, every model forecasting from every origin with only the data
up to it. Models, all run in this process:

* ours: ``DemandForecaster`` fed the raw series one window at a time (it must find the
  collection holes itself), refitted whenever ``needs_refit`` says so (daily); also shown
  without any refit (default parameters), as an ablation;
* naive: the last value;
* seasonal naive: the value one day before the target;
* Holt-Winters: statsmodels ``ExponentialSmoothing`` (additive damped trend, additive daily
  seasonality), refitted daily on all the history so far, re-filtered with the fitted
  parameters at every step. It needs two days to fit, so the first scored day's error window
  is filled by its first fit's forecasts (a look-ahead in its favour).

The baselines see the series with exact-zero windows replaced by the last non-zero value (the
fairest simple repair; fed zeros, the naive forecast drops to 0 in every hole). Each
baseline's upper bound is its forecast plus the rolling empirical 95% quantile of its own past
errors at that horizon over the last day (the window that served them best of 1, 3, 7 days and
all history). Ours is its own ``Forecast.upper`` at quantile 0.95.

Scoring: windows where the series is exactly 0 (every client reporting zero: the m-mid
collection holes) are missing, neither targets nor errors. Per series and horizon: point MAE,
pinball loss at 0.95 of the upper bound, its coverage, and ours over the best baseline.

Goals (issue): MAE no worse than the best baseline; pinball at most 0.9 x the best baseline's;
coverage between 93% and 97%; observe + forecast under 100 us on average.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scaler.model.forecast.forecaster import DemandForecaster
from scaler.sim.traces import RateTrace, read_trace

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"
HORIZONS = (1, 2, 3)
DAY_S = 86400.0
WARMUP_DAYS = 2
QUANTILE = 0.95
BASELINE_WINDOW_DAYS = 1
MIN_ERRORS = 20

FloatArray = npt.NDArray[np.float64]
Forecasts = dict[int, FloatArray]
"""Horizon (steps) -> forecast made at each origin t for t + h (NaN where none)."""


@dataclass(frozen=True)
class Model:
    name: str
    mean: Forecasts
    upper: Forecasts


@dataclass(frozen=True)
class Score:
    mae: float
    pinball: float
    coverage: float


@dataclass(frozen=True)
class Cost:
    observe_forecast_us: float
    observe_3_forecasts_us: float
    refit_s: float
    refits: int


# -- series -----------------------------------------------------------------------------


def rate_traces() -> list[RateTrace]:
    traces = [read_trace(p) for p in sorted(TRACES.glob("*.csv"))]
    return [t for t in traces if isinstance(t, RateTrace)]


def repaired(y: FloatArray) -> FloatArray:
    """Exact zeros replaced by the last non-zero value (causal), for the baselines."""
    out = y.copy()
    for i in range(1, out.size):
        if out[i] == 0.0:
            out[i] = out[i - 1]
    return out


def empty(n: int) -> Forecasts:
    return {h: np.full(n, np.nan) for h in HORIZONS}


# -- baselines --------------------------------------------------------------------------


def naive(y: FloatArray) -> Forecasts:
    return {h: y.copy() for h in HORIZONS}


def seasonal_naive(y: FloatArray, day: int) -> Forecasts:
    out = empty(y.size)
    for h in HORIZONS:
        out[h][day - h:] = y[:y.size - day + h]
    return out


def holt_winters(y: FloatArray, day: int, warmup: int) -> Forecasts:
    """statsmodels ETS(A,Ad,A), refitted at each day's end, re-filtered at every step."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing  # type: ignore[import-untyped]

    spec = {"trend": "add", "damped_trend": True, "seasonal": "add", "seasonal_periods": day}
    out = empty(y.size)
    params: dict[str, object] = {}
    for t in range(warmup - 1, y.size):
        origins = [t]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if (t + 1) % day == 0:
                params = ExponentialSmoothing(y[:t + 1], initialization_method="estimated",
                                              **spec).fit().params
                if t == warmup - 1:  # fill the first scored day's error window
                    origins = list(range(t - day + 1, t + 1))
            for origin in origins:
                _hw_forecast(ExponentialSmoothing, y, origin, params, spec, out)
    return out


def _hw_forecast(ets: Callable[..., object], y: FloatArray, t: int, params: dict[str, object],
                 spec: dict[str, object], out: Forecasts) -> None:
    """Forecasts from origin ``t`` by re-filtering ``y[:t + 1]`` with fixed parameters."""
    model: object = ets(y[:t + 1], initialization_method="known",
                        initial_level=params["initial_level"],
                        initial_trend=params["initial_trend"],
                        initial_seasonal=params["initial_seasons"], **spec)
    fitted = model.fit(smoothing_level=params["smoothing_level"],  # type: ignore[attr-defined]
                       smoothing_trend=params["smoothing_trend"],
                       smoothing_seasonal=params["smoothing_seasonal"],
                       damping_trend=params["damping_trend"], optimized=False)
    path = np.asarray(fitted.forecast(max(HORIZONS)), dtype=np.float64)
    for h in HORIZONS:
        out[h][t] = path[h - 1]


def empirical_upper(y: FloatArray, valid: npt.NDArray[np.bool_], mean: FloatArray, h: int,
                    window: int) -> FloatArray:
    """Forecast + the 95% quantile of the errors known at the origin (origins <= t - h)."""
    n = y.size
    errors = np.full(n, np.nan)
    known = np.arange(n - h)
    ok = valid[known + h] & ~np.isnan(mean[known])
    errors[known[ok]] = y[known[ok] + h] - mean[known[ok]]
    upper = np.full(n, np.nan)
    for t in range(n - h):
        past = errors[max(0, t - h - window + 1):t - h + 1]
        past = past[~np.isnan(past)]
        upper[t] = mean[t] + (np.quantile(past, QUANTILE) if past.size >= MIN_ERRORS else 0.0)
    return upper


def baseline(name: str, y: FloatArray, valid: npt.NDArray[np.bool_], mean: Forecasts,
             day: int) -> Model:
    window = BASELINE_WINDOW_DAYS * day
    return Model(name, mean, {h: empirical_upper(y, valid, mean[h], h, window) for h in HORIZONS})


# -- ours -------------------------------------------------------------------------------


def ours(trace: RateTrace, *, refit: bool) -> tuple[Model, Cost]:
    """Our forecaster fed the raw series; observe + forecast timed, refits not."""
    step = trace.step_s
    f = DemandForecaster(step, quantile=QUANTILE)
    n = len(trace)
    mean, upper = empty(n), empty(n)
    times, values = trace.start_s.tolist(), trace.rate.tolist()
    spent_1 = spent_3 = refit_s = 0.0
    refits = 0
    for i in range(n):
        started = time.perf_counter()
        f.observe(times[i], values[i])
        first = f.forecast(step)
        spent_1 += time.perf_counter() - started
        rest = [f.forecast(h * step) for h in HORIZONS[1:]]
        spent_3 += time.perf_counter() - started
        for h, fc in zip(HORIZONS, [first, *rest], strict=True):
            mean[h][i], upper[h][i] = fc.mean, fc.upper
        if refit and f.needs_refit:
            started = time.perf_counter()
            f.refit()
            refit_s += time.perf_counter() - started
            refits += 1
    name = "ours" if refit else "ours, no refit"
    return Model(name, mean, upper), Cost(spent_1 / n * 1e6, spent_3 / n * 1e6, refit_s, refits)


# -- scoring ----------------------------------------------------------------------------


def score(y: FloatArray, valid: npt.NDArray[np.bool_], model: Model, h: int,
          start: int) -> Score:
    origins = np.arange(start, y.size - h)
    origins = origins[valid[origins + h]]
    target, mean, upper = y[origins + h], model.mean[h][origins], model.upper[h][origins]
    miss = target - upper
    pinball = np.maximum(QUANTILE * miss, (QUANTILE - 1.0) * miss)
    return Score(float(np.mean(np.abs(target - mean))), float(np.mean(pinball)),
                 float(np.mean(target <= upper)))


@dataclass(frozen=True)
class Row:
    series: str
    h: int
    ours: Score
    best_mae: float
    best_pinball: float

    @property
    def mae_ratio(self) -> float:
        return self.ours.mae / self.best_mae

    @property
    def pinball_ratio(self) -> float:
        return self.ours.pinball / self.best_pinball


def evaluate(trace: RateTrace) -> tuple[list[Row], list[Cost]]:
    y = trace.rate
    day = round(DAY_S / trace.step_s)
    valid = y != 0.0
    fixed = repaired(y)
    started = time.perf_counter()
    models = [
        baseline("naive", y, valid, naive(fixed), day),
        baseline("seasonal naive", y, valid, seasonal_naive(fixed, day), day),
        baseline("holt-winters", y, valid, holt_winters(fixed, day, WARMUP_DAYS * day), day),
    ]
    baseline_s = time.perf_counter() - started
    mine, cost = ours(trace, refit=True)
    ablation, cost_fixed = ours(trace, refit=False)
    print(f"\n{trace.name}: {y.size} windows of {trace.step_s:g} s, {int((~valid).sum())} exactly "
          f"zero (missing for scoring); origins scored after {WARMUP_DAYS} days; baselines "
          f"took {baseline_s:.0f} s")
    print(f"{'h':>3}  {'model':<16}{'MAE':>9}{'pinball':>10}{'coverage':>10}")
    start = WARMUP_DAYS * day - 1
    rows = []
    for h in HORIZONS:
        scores = {m.name: score(y, valid, m, h, start) for m in [mine, ablation, *models]}
        for name, s in scores.items():
            label = f"{h * trace.step_s / 60:3.0f}m" if name == "ours" else ""
            print(f"{label:>4} {name:<16}{s.mae:9.1f}{s.pinball:10.2f}{s.coverage:10.1%}")
        row = Row(trace.name, h, scores["ours"], min(scores[m.name].mae for m in models),
                  min(scores[m.name].pinball for m in models))
        print(f"{'':>4} {'ours / best':<16}{row.mae_ratio:9.3f}{row.pinball_ratio:10.3f}")
        rows.append(row)
    return rows, [cost, cost_fixed]


# -- report -----------------------------------------------------------------------------


def goal_line(name: str, met: bool, detail: str) -> str:
    return f"goal {name}: {'met' if met else 'NOT met'} ({detail})"


def main() -> None:
    rows: list[Row] = []
    costs: list[Cost] = []
    for trace in rate_traces():
        trace_rows, trace_costs = evaluate(trace)
        rows += trace_rows
        costs += trace_costs
    print("\nsummary (ours / best baseline per series and horizon)")
    print(f"{'series':<24}{'h':>3}{'MAE':>8}{'pinball':>9}{'coverage':>10}")
    for r in rows:
        print(f"{r.series:<24}{r.h:>3}{r.mae_ratio:8.3f}{r.pinball_ratio:9.3f}"
              f"{r.ours.coverage:10.1%}")
    cost = max(c.observe_forecast_us for c in costs)
    cost3 = max(c.observe_3_forecasts_us for c in costs)
    refits = costs[0::2]
    refit_s = sum(c.refit_s for c in refits) / max(1, sum(c.refits for c in refits))
    print(f"\ncost: observe + forecast {cost:.1f} us per step (observe + 3 forecasts "
          f"{cost3:.1f} us); one refit {refit_s:.2f} s on average (off the event loop)")
    worst_mae = max(rows, key=lambda r: r.mae_ratio)
    worst_pin = max(rows, key=lambda r: r.pinball_ratio)
    covs = [r.ours.coverage for r in rows]
    print(goal_line("MAE <= best baseline", worst_mae.mae_ratio <= 1.0,
                    f"worst ratio {worst_mae.mae_ratio:.3f}, {worst_mae.series} h={worst_mae.h}"))
    print(goal_line("pinball <= 0.9 x best baseline", worst_pin.pinball_ratio <= 0.9,
                    f"worst ratio {worst_pin.pinball_ratio:.3f}, {worst_pin.series} "
                    f"h={worst_pin.h}; "
                    f"{sum(r.pinball_ratio <= 0.9 for r in rows)}/{len(rows)} met"))
    print(goal_line("coverage in [93%, 97%]", all(0.93 <= c <= 0.97 for c in covs),
                    f"{min(covs):.1%} to {max(covs):.1%}"))
    print(goal_line("observe + forecast < 100 us", cost < 100.0, f"{cost:.1f} us"))


if __name__ == "__main__":
    main()
