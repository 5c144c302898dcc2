"""Forecast accuracy of scaler.model.forecast against three baselines, on every real series.

    python benchmarks/forecast_accuracy.py [--series SUBSTRING ...]   # pip install -e '.[bench]'

Series, all built from ../shared/traces/ (``--series`` keeps those whose name contains one of
the given substrings):

* each ServeGen CSV's request rate (requests/s every 600 s, 14 days) and its input-token rate
  (requests/s x mean input tokens: another real series, with the token means' 6-hour steps);
* the Azure code trace's one hour binned into 1-minute windows: request rate and prompt-token
  rate (horizons 1, 2 and 3 steps: 1, 2 and 3 minutes; too short for a daily season);
* "first days": each ServeGen series cut into its 14 days, each day a new workload (every
  model starts afresh on it, under the short protocol below, and the scores pool the 14
  days). A workload's first day is the forecaster's own regime (no season yet), the one the
  Azure hour tests; these give it a series to be tuned on (m-small's request rate) and
  others to check on.

The forecaster's constants were tuned on ``TUNING`` only (m-small's request rate); every other
series is held out, and the report says which is which.

For each series and each horizon of 1, 2 and 3 steps (10, 20, 30 minutes on the 14-day
series): rolling-origin evaluation after a warm-up (two days; ten steps on a series shorter
than two days and on each first day), every model forecasting from every origin with only the
data up to it. Models, all run in this process:

* ours: ``DemandForecaster`` fed the raw series one window at a time, with ``zero_holes`` on
  (it must find the collection holes itself; told how many requests a unit of a token rate
  stands for, the series' tokens per request, which its hole rule counts; the service runs it
  with the rule off, its missing readings being NaN, never 0), refitted whenever
  ``needs_refit`` says so (daily); also shown as ablations: without any refit (default
  parameters), without its naive guard, and with the daily season only (no weekly);
* naive: the last value;
* seasonal naive: the value one day before the target (series of two days or more);
* Holt-Winters: statsmodels ``ExponentialSmoothing`` (additive damped trend, additive daily
  seasonality; on the one-hour series no season, refitted every ``SHORT_REFIT`` steps),
  refitted daily on all the history so far, re-filtered with the fitted parameters at every
  step. It needs two days to fit, so the first scored day's error window is filled by its
  first fit's forecasts (a look-ahead in its favour).

The baselines see the series with exact-zero windows replaced by the last non-zero value (the
fairest simple repair; fed zeros, the naive forecast drops to 0 in every hole). Each
baseline's upper bound is its forecast plus the rolling empirical 95% quantile of its own past
errors at that horizon over the last day (all the history on the one-hour series; a day was
the window that served them best of 1, 3, 7 days and all history). Ours is its own
``Forecast.upper`` at quantile 0.95.

Scoring: windows where the series is exactly 0 (every client reporting zero: the collection
holes) are missing, neither targets nor errors. Per series and horizon: point MAE, pinball
loss at 0.95 of the upper bound, its coverage; ours over naive's MAE and over the best
baseline's MAE and pinball.

Goals (issue 15, item 6): on every held-out series MAE <= 1.0x naive's and pinball <= 1.0x the
best baseline's; pinball <= 0.9x on the 14-day series; coverage between 93% and 97%; observe +
forecast under 100 us on average.
"""

from __future__ import annotations

import argparse
import csv
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
from scaler.sim.traces import RateTrace, RequestTrace, read_trace

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"
TUNING = ("servegen_m-small_14d requests/s", "servegen_m-small_14d requests/s, first days")
"""The series the forecaster's constants were tuned on; all others are held out."""
HORIZONS = (1, 2, 3)
DAY_S = 86400.0
WARMUP_DAYS = 2
SHORT_WARMUP = 10
"""Warm-up (steps) of a series shorter than two days: ten minutes of 1-minute bins."""
SHORT_REFIT = 10
"""Holt's refit period (steps) on a series shorter than two days."""
AZURE_BIN_S = 60.0
"""Bins of the Azure hour: at 10 s, 56% of them are empty (its idle spells last minutes)."""
QUANTILE = 0.95
BASELINE_WINDOW_DAYS = 1
MIN_ERRORS = 20

FloatArray = npt.NDArray[np.float64]
Forecasts = dict[int, FloatArray]
"""Horizon (steps) -> forecast made at each origin t for t + h (NaN where none)."""


@dataclass(frozen=True)
class Series:
    """One real series: windows of ``step_s`` starting at ``times``; 0 marks a hole.
    ``arrivals_per_unit``: requests per second one unit of ``y`` stands for (1 for a request
    rate, 1 / mean tokens per request for a token rate), what tells ours a hole from a lull."""

    name: str
    step_s: float
    times: FloatArray
    y: FloatArray
    arrivals_per_unit: float = 1.0
    segment: int | None = None
    """Steps per independent part ("first days"): each is a new workload to every model."""

    @property
    def day(self) -> int | None:
        """Steps per day, when the series is long enough for a daily season (two days)."""
        day = round(DAY_S / self.step_s)
        long = self.y.size >= WARMUP_DAYS * day + max(HORIZONS)
        return day if long and self.segment is None else None

    def parts(self) -> list[Series]:
        """The series cut into its segments (itself when it has none)."""
        if self.segment is None:
            return [self]
        n = self.segment
        return [Series(self.name, self.step_s, self.times[i:i + n], self.y[i:i + n],
                       self.arrivals_per_unit) for i in range(0, self.y.size - n + 1, n)]

    @property
    def warmup(self) -> int:
        return WARMUP_DAYS * self.day if self.day is not None else SHORT_WARMUP

    @property
    def role(self) -> str:
        return "tuning" if self.name in TUNING else "held out"


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


def all_series() -> list[Series]:
    out: list[Series] = []
    for path in sorted(TRACES.glob("*.csv")):
        trace = read_trace(path)
        if isinstance(trace, RateTrace):
            rate = np.where(raw_zeros(path), 0.0, trace.rate)
            out.append(Series(f"{trace.name} requests/s", trace.step_s, trace.start_s, rate))
            tokens = rate * trace.mean_prompt
            per_token = float(rate.sum() / tokens.sum())
            out.append(Series(f"{trace.name} input tokens/s", trace.step_s, trace.start_s,
                              tokens, per_token))
            day = round(DAY_S / trace.step_s)
            out.append(Series(f"{trace.name} requests/s, first days", trace.step_s,
                              trace.start_s, rate, segment=day))
            out.append(Series(f"{trace.name} input tokens/s, first days", trace.step_s,
                              trace.start_s, tokens, per_token, segment=day))
        elif isinstance(trace, RequestTrace):
            out += binned(trace, AZURE_BIN_S)
    return out


def raw_zeros(path: Path) -> npt.NDArray[np.bool_]:
    """The windows whose rate (second column) is exactly 0 in the file. ``read_trace`` fills
    the holes among them by interpolation for the replay, which looks ahead (the value after
    the hole); this benchmark keeps them as holes: missing, for every model to get past."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f))[1:]
    return np.array([float(row[1]) == 0.0 for row in rows if row], dtype=np.bool_)


def binned(trace: RequestTrace, bin_s: float) -> list[Series]:
    """Request and prompt-token rates of a request trace in windows of ``bin_s``."""
    n = int(trace.arrival_s[-1] // bin_s) + 1
    index = (trace.arrival_s // bin_s).astype(np.int64)
    requests = np.bincount(index, minlength=n).astype(np.float64) / bin_s
    tokens = np.bincount(index, weights=trace.prompt_tokens, minlength=n) / bin_s
    times = np.arange(n, dtype=np.float64) * bin_s
    label = f"{trace.name} ({bin_s:g} s bins)"
    return [Series(f"{label} requests/s", bin_s, times, requests),
            Series(f"{label} prompt tokens/s", bin_s, times, tokens,
                   float(requests.sum() / tokens.sum()))]


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


def holt_winters(y: FloatArray, day: int | None, warmup: int) -> Forecasts:
    """statsmodels ETS(A,Ad,A) (ETS(A,Ad,N) without ``day``), refitted every day (every
    ``SHORT_REFIT`` steps), re-filtered at every step."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing  # type: ignore[import-untyped]

    spec: dict[str, object] = {"trend": "add", "damped_trend": True}
    if day is not None:
        spec |= {"seasonal": "add", "seasonal_periods": day}
    every = day if day is not None else SHORT_REFIT
    out = empty(y.size)
    params: dict[str, object] = {}
    for t in range(warmup - 1, y.size):
        origins = [t]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if (t + 1 - warmup) % every == 0:
                params = ExponentialSmoothing(y[:t + 1], initialization_method="estimated",
                                              **spec).fit().params
                if t == warmup - 1:  # fill the first scored error window
                    origins = list(range(max(1, t - every + 1), t + 1))
            for origin in origins:
                _hw_forecast(ExponentialSmoothing, y, origin, params, spec, out)
    return out


def _hw_forecast(ets: Callable[..., object], y: FloatArray, t: int, params: dict[str, object],
                 spec: dict[str, object], out: Forecasts) -> None:
    """Forecasts from origin ``t`` by re-filtering ``y[:t + 1]`` with fixed parameters."""
    seasons = {"initial_seasonal": params["initial_seasons"]} if "seasonal" in spec else {}
    model: object = ets(y[:t + 1], initialization_method="known",
                        initial_level=params["initial_level"],
                        initial_trend=params["initial_trend"], **seasons, **spec)
    smoothing = {"smoothing_seasonal": params["smoothing_seasonal"]} if seasons else {}
    fitted = model.fit(smoothing_level=params["smoothing_level"],  # type: ignore[attr-defined]
                       smoothing_trend=params["smoothing_trend"],
                       damping_trend=params["damping_trend"], optimized=False, **smoothing)
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


def baselines(series: Series, valid: npt.NDArray[np.bool_]) -> list[Model]:
    y, day = series.y, series.day
    fixed = repaired(y)
    window = BASELINE_WINDOW_DAYS * day if day is not None else y.size
    means = {"naive": naive(fixed)}
    if day is not None:
        means["seasonal naive"] = seasonal_naive(fixed, day)
    means["holt-winters"] = holt_winters(fixed, day, series.warmup)
    return [Model(name, mean, {h: empirical_upper(y, valid, mean[h], h, window)
                               for h in HORIZONS}) for name, mean in means.items()]


# -- ours -------------------------------------------------------------------------------

VARIANTS: dict[str, dict[str, object]] = {
    "ours": {},
    "ours, no refit": {"refit": False},
    "ours, no guard": {"guard": False},
    "ours, daily only": {"seasons_s": (DAY_S,)},
}


def ours(series: Series, name: str) -> tuple[Model, Cost]:
    """Our forecaster fed the raw series; observe + forecast timed, refits not."""
    options = dict(VARIANTS[name])
    refit = bool(options.pop("refit", True))
    step = series.step_s
    f = DemandForecaster(step, quantile=QUANTILE, arrivals_per_unit=series.arrivals_per_unit,
                         zero_holes=True, **options)  # type: ignore[arg-type]
    n = series.y.size
    mean, upper = empty(n), empty(n)
    times, values = series.times.tolist(), series.y.tolist()
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
    return Model(name, mean, upper), Cost(spent_1 / n * 1e6, spent_3 / n * 1e6, refit_s, refits)


# -- scoring ----------------------------------------------------------------------------


def score(y: FloatArray, valid: npt.NDArray[np.bool_], model: Model, h: int,
          origins: npt.NDArray[np.int64]) -> Score:
    origins = origins[valid[origins + h]]
    target, mean, upper = y[origins + h], model.mean[h][origins], model.upper[h][origins]
    miss = target - upper
    pinball = np.maximum(QUANTILE * miss, (QUANTILE - 1.0) * miss)
    return Score(float(np.mean(np.abs(target - mean))), float(np.mean(pinball)),
                 float(np.mean(target <= upper)))


def scored_origins(parts: list[Series], h: int) -> npt.NDArray[np.int64]:
    """Origins after each part's warm-up whose target ``h`` steps on lies in the same part."""
    out, offset = [], 0
    for part in parts:
        out.append(np.arange(offset + part.warmup - 1, offset + part.y.size - h))
        offset += part.y.size
    return np.concatenate(out)


def joined(parts: list[list[Model]]) -> list[Model]:
    """Each model's forecasts over the parts, end to end (the parts' order kept)."""
    return [Model(first.name,
                  {h: np.concatenate([p[i].mean[h] for p in parts]) for h in HORIZONS},
                  {h: np.concatenate([p[i].upper[h] for p in parts]) for h in HORIZONS})
            for i, first in enumerate(parts[0])]


def run_models(parts: list[Series]) -> tuple[list[Model], list[Model], list[Cost]]:
    """Baselines and our variants on each part (each a new workload), joined."""
    base, mine, costs = [], [], []
    for part in parts:
        base.append(baselines(part, np.isfinite(part.y) & (part.y != 0.0)))
        ran = [ours(part, name) for name in VARIANTS]
        mine.append([m for m, _ in ran])
        costs.append([c for _, c in ran[:2]])
    merged = [Cost(float(np.mean([c[i].observe_forecast_us for c in costs])),
                   float(np.mean([c[i].observe_3_forecasts_us for c in costs])),
                   sum(c[i].refit_s for c in costs), sum(c[i].refits for c in costs))
              for i in range(2)]
    return joined(base), joined(mine), merged


@dataclass(frozen=True)
class Row:
    series: Series
    h: int
    ours: Score
    naive_mae: float
    best_mae: float
    best_pinball: float

    @property
    def mae_vs_naive(self) -> float:
        return self.ours.mae / self.naive_mae

    @property
    def mae_ratio(self) -> float:
        return self.ours.mae / self.best_mae

    @property
    def pinball_ratio(self) -> float:
        return self.ours.pinball / self.best_pinball

    @property
    def horizon(self) -> str:
        seconds = self.h * self.series.step_s
        return f"{seconds / 60:.0f}m" if seconds >= 60 else f"{seconds:.0f}s"


def evaluate(series: Series) -> tuple[list[Row], list[Cost]]:
    parts = series.parts()
    y = np.concatenate([p.y for p in parts])
    valid = np.isfinite(y) & (y != 0.0)
    started = time.perf_counter()
    models, mine, costs = run_models(parts)
    spent_s = time.perf_counter() - started
    cut = f" in {len(parts)} new workloads of {parts[0].y.size}" if len(parts) > 1 else ""
    print(f"\n{series.name} ({series.role}): {y.size} windows of {series.step_s:g} s{cut}, "
          f"{int((~valid).sum())} exactly zero (missing for scoring); origins scored after "
          f"{parts[0].warmup} steps; all models took {spent_s:.0f} s")
    print(f"{'h':>4}  {'model':<18}{'MAE':>11}{'pinball':>11}{'coverage':>10}")
    rows = []
    for h in HORIZONS:
        origins = scored_origins(parts, h)
        scores = {m.name: score(y, valid, m, h, origins) for m in [*mine, *models]}
        row = Row(series, h, scores["ours"], scores["naive"].mae,
                  min(scores[m.name].mae for m in models),
                  min(scores[m.name].pinball for m in models))
        for name, s in scores.items():
            label = row.horizon if name == "ours" else ""
            print(f"{label:>5} {name:<18}{s.mae:11.4g}{s.pinball:11.4g}{s.coverage:10.1%}")
        print(f"{'':>5} {'ours / naive':<18}{row.mae_vs_naive:11.3f}")
        print(f"{'':>5} {'ours / best':<18}{row.mae_ratio:11.3f}{row.pinball_ratio:11.3f}")
        rows.append(row)
    return rows, costs


# -- report -----------------------------------------------------------------------------


def goal_line(name: str, rows: list[Row], ratio: Callable[[Row], float], limit: float) -> str:
    if not rows:
        return f"goal {name}: no series"
    worst = max(rows, key=ratio)
    met = sum(ratio(r) <= limit for r in rows)
    return (f"goal {name}: {'met' if met == len(rows) else 'NOT met'} ({met}/{len(rows)}; worst"
            f" {ratio(worst):.3f}, {worst.series.name} at {worst.horizon})")


def report(rows: list[Row], costs: list[Cost]) -> None:
    print("\nsummary: ours / naive (MAE) and ours / best baseline (MAE, pinball)")
    print(f"{'series':<52}{'role':<10}{'h':>5}{'MAE/naive':>10}{'MAE/best':>9}"
          f"{'pinball':>9}{'coverage':>9}")
    for r in rows:
        print(f"{r.series.name:<52}{r.series.role:<10}{r.horizon:>5}{r.mae_vs_naive:10.3f}"
              f"{r.mae_ratio:9.3f}{r.pinball_ratio:9.3f}{r.ours.coverage:9.1%}")
    cost = max(c.observe_forecast_us for c in costs)
    cost3 = max(c.observe_3_forecasts_us for c in costs)
    refits = costs[0::2]
    refit_s = sum(c.refit_s for c in refits) / max(1, sum(c.refits for c in refits))
    print(f"\ncost: observe + forecast {cost:.1f} us per step (observe + 3 forecasts "
          f"{cost3:.1f} us); one refit {refit_s:.2f} s on average (off the event loop)")
    held = [r for r in rows if r.series.role == "held out"]
    long = [r for r in rows if r.series.day is not None]
    covs = [r.ours.coverage for r in rows]
    print(goal_line("held out: MAE <= 1.0 x naive", held, lambda r: r.mae_vs_naive, 1.0))
    print(goal_line("held out: pinball <= 1.0 x best", held, lambda r: r.pinball_ratio, 1.0))
    print(goal_line("14-day: pinball <= 0.9 x best", long, lambda r: r.pinball_ratio, 0.9))
    print(goal_line("14-day: MAE <= 0.9 x naive", long, lambda r: r.mae_vs_naive, 0.9))
    print(f"goal coverage in [93%, 97%]: "
          f"{'met' if all(0.93 <= c <= 0.97 for c in covs) else 'NOT met'} "
          f"({min(covs):.1%} to {max(covs):.1%})")
    print(f"goal observe + forecast < 100 us: {'met' if cost < 100.0 else 'NOT met'} "
          f"({cost:.1f} us)")


def memory_per_workload(days: int = 15, step_s: float = 300.0) -> None:
    """What one forecaster holds after ``days`` of m-small's rate at the service's step
    (each 10-minute value fed twice, the trace cycled past its 14 days): tracemalloc."""
    import gc
    import json
    import tracemalloc

    trace = read_trace(TRACES / "servegen_m-small_14d.csv")
    assert isinstance(trace, RateTrace)
    per = round(trace.step_s / step_s)
    values = np.repeat(trace.rate, per).tolist()
    steps = round(days * DAY_S / step_s)
    gc.collect()
    tracemalloc.start()
    f = DemandForecaster(step_s)
    for i in range(steps):
        f.observe(i * step_s, values[i % len(values)])
    gc.collect()
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    week = f._core.seasons[1]  # the weekly season: its indices, nothing gathered any more
    print(f"\nmemory per workload after {days} days at {step_s:g} s steps: {held / 1024:.0f} KiB "
          f"(tracemalloc); weekly season {len(week.values)} phases x 8 B = "
          f"{week.values.buffer_info()[1] * week.values.itemsize / 1024:.0f} KiB, gathering "
          f"{'done' if week.gathered is None else 'under way'}; state as JSON "
          f"{len(json.dumps(f.to_dict())) / 1024:.0f} KiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", action="append", default=[],
                        help="keep series whose name contains this (repeatable)")
    args = parser.parse_args()
    rows: list[Row] = []
    costs: list[Cost] = []
    for series in all_series():
        if args.series and not any(s in series.name for s in args.series):
            continue
        series_rows, series_costs = evaluate(series)
        rows += series_rows
        costs += series_costs
    report(rows, costs)
    memory_per_workload()


if __name__ == "__main__":
    main()
