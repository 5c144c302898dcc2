"""How much of the predictive policy's gap to the oracle is the forecast, and how much the rules.

    python benchmarks/forecast_value.py [--trace NAME ...] [--forecast KIND ...]
        [--hpa-tolerance T] [--plot out/forecast_value.png]

The same planner (``scaler.model.predictive.PredictivePlanner``: scale-down window, hold while
replicas start, node plan) is replayed on each 14-day trace in ../shared/traces/ with three
forecasts in its place, all measured in this run next to the oracle:

* **the future**: the trace's own next bins (the largest work over the coming lead time, at the
  lengths the planner sizes with). What it costs over the oracle is what the planner's rules
  cost (the HPA it reaches the Deployment through included: the shipped ScaledObject's,
  tolerance 0); the rest of the gap is forecast error.
* **ours**: ``DemandForecaster``, as the service and ``scaler bench`` run it;
* **naive + band**: the last step's mean, with an upper bound of the last value plus the rolling
  empirical 95% quantile of its own errors at that horizon over the last day (the forecasting
  benchmark's best baseline at these horizons; exact zeros are skipped as collection holes, as
  ours does, so both hold capacity through them).

``--hpa-tolerance 0.1`` replays the predictive rows through an HPA that keeps the cluster's
10 % tolerance (no HPAConfigurableTolerance) instead of the shipped ScaledObject's 0;
``--forecast`` runs only those rows (the oracle always runs: every ratio is over it).

Every row is swept over ``scaler bench``'s grid (bisection): the headroom, and for the oracle
the miss share it plans for, and the first setting reaching 99% SLO attainment is shown. Two
replays run at once (two cores); about half an hour in all on two shared cores.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from bisect import insort
from collections import deque
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scaler.config.profiles import default_profile
from scaler.model.forecast.forecaster import DemandForecaster, Forecast
from scaler.model.predictive import FORECAST_STEP_S, PredictivePlanner
from scaler.sim.policies import PredictivePolicy
from scaler.sim.policy_catalog import SWEEPS, make_policy
from scaler.sim.replay import ReplaySettings, replay
from scaler.sim.results import ReplayResult
from scaler.sim.traces import RateTrace, read_trace

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"
SLO_TARGET = 0.99
BAND_WINDOW_STEPS = 288  # one day of 5-minute steps: the baselines' best window
BAND_HORIZONS = 8  # steps of error kept per horizon: covers the node lead (1,095 s) plus lag
MIN_ERRORS = 20


class NaiveBandForecaster:
    """Last value, upper bound = last value + the empirical 95% quantile of its past errors.

    Speaks the part of ``DemandForecaster`` the planner and the replay's policy use
    (``step_s``, ``ready``, ``observe``, ``forecast``, ``needs_refit``). Until ``MIN_ERRORS``
    errors are known at a horizon the bound is the mean.
    """

    needs_refit = False  # nothing to refit: the band is rolled at each step

    def __init__(self, step_s: float, quantile: float = 0.95) -> None:
        self.step_s = step_s
        self.quantile = quantile
        self._values: deque[tuple[int, float]] = deque(maxlen=BAND_HORIZONS + 1)
        self._errors = [_Window(BAND_WINDOW_STEPS) for _ in range(BAND_HORIZONS)]

    @property
    def ready(self) -> bool:
        """A value seen: before that the planner sizes for the observed demand."""
        return bool(self._values)

    def observe(self, t_s: float, value: float) -> None:
        if not (math.isfinite(value) and value > 0):  # missing, or a collection hole
            return
        k = round(t_s / self.step_s)
        for k_then, then in self._values:
            m = k - k_then
            if 1 <= m <= BAND_HORIZONS:
                self._errors[m - 1].add(value - then)
        self._values.append((k, value))

    def forecast(self, horizon_s: float) -> Forecast:
        if not self._values:
            return Forecast(0.0, 0.0)
        last = self._values[-1][1]
        m = min(max(1, math.ceil(horizon_s / self.step_s - 1e-9)), BAND_HORIZONS)
        errors = self._errors[m - 1]
        if len(errors) < MIN_ERRORS:
            return Forecast(last, last)
        return Forecast(last, max(last, last + errors.quantile(self.quantile)))


class _Window:
    """The last ``size`` numbers, kept sorted for a conformal quantile."""

    def __init__(self, size: int) -> None:
        self._order: deque[float] = deque(maxlen=size)
        self._sorted: list[float] = []

    def __len__(self) -> int:
        return len(self._sorted)

    def add(self, x: float) -> None:
        if len(self._order) == self._order.maxlen:
            old = self._order[0]
            del self._sorted[np.searchsorted(self._sorted, old)]
        self._order.append(x)
        insort(self._sorted, x)

    def quantile(self, q: float) -> float:
        n = len(self._sorted)
        rank = min(n, math.ceil((n + 1) * q))
        return self._sorted[rank - 1]


class FuturePlanner(PredictivePlanner):
    """The planner with the trace's future as its forecast (its rules, no forecast error)."""

    def __init__(self, planner: PredictivePlanner, trace: RateTrace) -> None:
        super().__init__(planner.settings, planner.capacity, planner.forecaster)
        self._trace = trace

    def _forecast_peak(self, now_s: float, horizon_s: float) -> tuple[float, float]:
        """The most work over [now, now + horizon], as a rate at the lengths sized with."""
        tr = self._trace
        first = max(int(np.searchsorted(tr.start_s, now_s, side="right")) - 1, 0)
        last = max(int(np.searchsorted(tr.start_s, now_s + horizon_s, side="right")), first + 1)
        per_replica = self.capacity.per_replica_rate
        sized = per_replica(*self._lengths)
        peak = max(float(tr.rate[i]) * sized
                   / per_replica(float(tr.mean_prompt[i]), max(float(tr.mean_output[i]), 1.0))
                   for i in range(first, last))
        return peak, peak


@dataclass(frozen=True)
class Row:
    trace: str
    forecast: str
    headroom: float
    slo: float
    gpu_hours: float
    node_hours: float
    runs: int


KINDS = ["the future", "ours", "naive + band"]
FORECASTS: dict[str, Callable[[], object]] = {
    "ours": lambda: DemandForecaster(step_s=FORECAST_STEP_S),
    "naive + band": lambda: NaiveBandForecaster(FORECAST_STEP_S),
}


def _run(trace_path: Path, forecast: str, knob: float, hpa_tolerance: float) -> ReplayResult:
    trace = read_trace(trace_path)
    settings = ReplaySettings(slo_target=SLO_TARGET, hpa_tolerance=hpa_tolerance)
    profile = default_profile()
    if forecast == "oracle":
        return replay(trace, make_policy("oracle", knob, trace, settings, profile),
                      settings=settings, profile=profile)
    policy = make_policy("predictive", knob, trace, settings, profile)
    assert isinstance(policy, PredictivePolicy) and isinstance(trace, RateTrace)
    if forecast == "the future":
        policy.planner = FuturePlanner(policy.planner, trace)
    else:
        policy.planner.forecaster = FORECASTS[forecast]()  # type: ignore[assignment]
    return replay(trace, policy, settings=settings, profile=profile)


def cheapest(trace_path: Path, forecast: str, hpa_tolerance: float = 0.0) -> Row:
    """Bisection over the knob's grid (``scaler bench``'s) for the first run reaching the SLO
    target: the headroom, and for the oracle the miss share it plans for."""
    grid = SWEEPS["oracle" if forecast == "oracle" else "predictive"]
    runs: dict[int, ReplayResult] = {}

    def run(i: int) -> ReplayResult:
        if i not in runs:
            runs[i] = _run(trace_path, forecast, grid[i], hpa_tolerance)
            print(f"  {trace_path.stem:<22} {forecast:<13} knob {grid[i]:<8g} "
                  f"SLO {runs[i].slo_attainment:.2%}", flush=True)
        return runs[i]

    lo, hi = 0, len(grid) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if run(mid).slo_attainment >= SLO_TARGET:
            hi = mid
        else:
            lo = mid + 1
    best_i = lo
    best = run(best_i)
    return Row(trace_path.stem, forecast, grid[best_i], best.slo_attainment, best.gpu_hours,
               best.node_hours, len(runs))


def table(rows: list[Row]) -> str:
    lines = ["| trace | forecast in the planner | knob | SLO | GPU-h | node-h "
             "| GPU-h / oracle | node-h / oracle |", "| --- | --- | --- | --- | --- | --- | --- "
             "| --- |"]
    for row in rows:
        oracle = next(r for r in rows if r.trace == row.trace and r.forecast == "oracle")
        lines.append(f"| {row.trace} | {row.forecast} | {row.headroom:g} | {row.slo:.2%} | "
                     f"{row.gpu_hours:,.0f} | {row.node_hours:,.0f} | "
                     f"{row.gpu_hours / oracle.gpu_hours:.2f} | "
                     f"{row.node_hours / oracle.node_hours:.2f} |")
    return "\n".join(lines)


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traces = sorted({r.trace for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    goals = {"gpu_hours": 1.35, "node_hours": 1.35}  # issue 15's goals against the oracle
    for ax, unit in zip(axes, ("gpu_hours", "node_hours"), strict=True):
        for j, kind in enumerate(KINDS):
            ratios = []
            for t in traces:
                oracle = next(r for r in rows if r.trace == t and r.forecast == "oracle")
                row = next(r for r in rows if r.trace == t and r.forecast == kind)
                ratios.append(getattr(row, unit) / getattr(oracle, unit))
            ax.bar(np.arange(len(traces)) + (j - 1) * 0.27, ratios, 0.27, label=kind)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axhline(goals[unit], color="grey", linestyle="--", linewidth=0.8,
                   label=f"goal {goals[unit]:g}x")
        ax.set_xticks(np.arange(len(traces)), traces)
        ax.set_title(f"{unit.replace('_', '-')} / oracle at {SLO_TARGET:.0%} SLO")
    axes[0].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", action="append",
                        help="trace name in ../shared/traces (default: the 14-day ones)")
    parser.add_argument("--forecast", action="append", choices=KINDS,
                        help="run only these rows (repeatable; default: all)")
    parser.add_argument("--hpa-tolerance", type=float, default=0.0,
                        help="the predictive rows' HPA tolerance (default 0, as shipped)")
    parser.add_argument("--plot", type=Path, default=Path("out/forecast_value.png"))
    args = parser.parse_args()
    names = args.trace or sorted(p.stem for p in TRACES.glob("servegen_*_14d.csv"))
    kinds = ["oracle", *(args.forecast or KINDS)]
    jobs = [(TRACES / f"{n}.csv", f, args.hpa_tolerance) for n in names for f in kinds]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=2) as pool:
        rows = list(pool.map(cheapest, *zip(*jobs, strict=True)))
    print()
    print(table(rows))
    if not args.forecast:
        plot(rows, args.plot)
    print(f"\n{sum(r.runs for r in rows)} replays in {time.perf_counter() - started:.0f} s; "
          f"plot: {args.plot}")


if __name__ == "__main__":
    main()
