"""`scaler replay` and `scaler bench`: what-if runs of scaling policies on a trace.

Both take the same flags (durations in seconds) so scripts can rely on them:
``--trace --policy --out --rate-scale --pod-startup --node-startup --slo-ttft
--gpus-per-replica --gpus-per-node``. Without ``--trace`` the built-in seeded
synthetic workload is used.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence

from scaler.commands.flags import REPLAY_POLICIES
from scaler.config.profiles import default_profile, load_profile
from scaler.model.capacity import CapacityModel
from scaler.model.forecast.forecaster import DemandForecaster
from scaler.model.predictive import FORECAST_STEP_S, PlannerSettings
from scaler.model.profile import ReplicaProfile
from scaler.model.specs import NodeShape, PlanSettings, ReactiveTargets, ReplicaBounds
from scaler.sim.policies import Policy, PredictivePolicy, ReactivePolicy, StaticPolicy
from scaler.sim.replay import ReplaySettings, make_oracle, replay
from scaler.sim.report import write_comparison, write_outputs
from scaler.sim.results import ReplayResult
from scaler.sim.synthetic import synthetic_workload as builtin_workload
from scaler.sim.traces import RateTrace, RequestTrace, TraceError, read_trace, scale

# The main knob of each policy and the values `scaler bench` tries, cheapest-looking first.
SWEEPS: dict[str, tuple[float, ...]] = {
    "reactive": (0.8, 0.6, 0.4, 0.3, 0.2, 0.15, 0.1, 0.08, 0.06, 0.05, 0.04, 0.03, 0.02,
                 0.015, 0.01, 0.007, 0.005, 0.003, 0.002),
    "predictive": (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.35, 1.5, 1.75, 2.0, 2.5, 3.0),
}


def run_replay(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if loaded is None:
        return 2
    trace, settings, profile = loaded
    name = (args.policy or ["reactive"])[0]
    policy = make_policy(name, args.knob, trace, settings, profile)
    started = time.perf_counter()
    result = replay(trace, policy, settings=settings, profile=profile,
                    progress=_progress_bar(f"replay {name}"))
    result.parameters["rate_scale"] = args.rate_scale
    paths = write_outputs(result, args.out)
    print(_headline(result, time.perf_counter() - started))
    for path in paths.values():
        print(f"  {path}")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if loaded is None:
        return 2
    trace, settings, profile = loaded
    chosen: list[ReplayResult] = []
    report: dict[str, dict[str, float | str | None]] = {}
    oracle = replay(trace, make_oracle(trace, settings=settings, profile=profile),
                    settings=settings, profile=profile, progress=_progress_bar("oracle"))
    for name in args.policy or REPLAY_POLICIES:
        best = oracle if name == "oracle" else _cheapest_meeting_slo(
            name, trace, settings, profile, oracle)
        best.parameters["rate_scale"] = args.rate_scale
        chosen.append(best)
        report[name] = _bench_row(best, oracle)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(
        {"trace": trace.name, "slo_ttft_s": settings.slo_ttft_s,
         "slo_target": settings.slo_target, "policies": report}, indent=2) + "\n")
    write_comparison(chosen, args.out / "bench.md", args.out / "bench.png")
    for name, row in report.items():
        print(f"{name:>9}: knob {row['knob']}={row['knob_value']}  SLO "
              f"{float(row['slo_attainment'] or 0):.2%}  GPU-h {row['gpu_hours']:.1f}  "
              f"node-h {row['node_hours']:.1f}  GPU-h vs oracle {row['gpu_hours_vs_oracle']}")
    print(f"  {args.out / 'bench.json'}\n  {args.out / 'bench.md'}")
    return 0


def _cheapest_meeting_slo(name: str, trace: RequestTrace | RateTrace, settings: ReplaySettings,
                          profile: ReplicaProfile, oracle: ReplayResult) -> ReplayResult:
    """The cheapest run of the knob grid reaching the SLO target, else the best SLO.

    The grid runs from the cheapest setting to the most generous, and SLO attainment grows
    (nearly) monotonically along it, so a bisection finds the first setting meeting the
    target in log2(len) runs instead of len; every run made is a candidate.
    """
    grid = list(_sweep(name, oracle))
    runs: dict[int, ReplayResult] = {}

    def run(i: int) -> ReplayResult:
        if i not in runs:
            runs[i] = replay(trace, make_policy(name, grid[i], trace, settings, profile),
                             settings=settings, profile=profile,
                             progress=_progress_bar(f"{name} knob={grid[i]:g}"))
        return runs[i]

    lo, hi = 0, len(grid) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if run(mid).slo_attainment >= settings.slo_target:
            hi = mid
        else:
            lo = mid + 1
    run(lo)
    meeting = [r for r in runs.values() if r.slo_attainment >= settings.slo_target]
    if meeting:
        return min(meeting, key=lambda r: r.gpu_hours)
    return max(runs.values(), key=lambda r: (r.slo_attainment, -r.gpu_hours))


def _sweep(name: str, oracle: ReplayResult) -> Sequence[float]:
    if name == "static":
        peak = max((r.desired_replicas for r in oracle.decisions), default=1)
        return tuple(float(n) for n in range(max(1, round(peak * 0.5)), round(peak * 2) + 1))
    return SWEEPS[name]


def _bench_row(result: ReplayResult, oracle: ReplayResult) -> dict[str, float | str | None]:
    ratio = result.gpu_hours / oracle.gpu_hours if oracle.gpu_hours > 0 else None
    knob = result.parameters.get("knob_value")
    return {
        "knob": str(result.parameters.get("knob")),
        "knob_value": None if knob is None or (isinstance(knob, float) and math.isnan(knob))
        else float(knob),
        "gpu_hours": result.gpu_hours, "node_hours": result.node_hours,
        "slo_attainment": result.slo_attainment,
        "gpu_hours_vs_oracle": None if ratio is None else round(ratio, 3),
        "node_hours_vs_oracle": round(result.node_hours / oracle.node_hours, 3)
        if oracle.node_hours > 0 else None,
    }


def make_policy(name: str, knob: float | None, trace: RequestTrace | RateTrace,
            settings: ReplaySettings, profile: ReplicaProfile) -> Policy:
    oracle = make_oracle(trace, settings=settings, profile=profile)
    if name == "reactive":
        # maxReplicaCount as an operator sets it: twice the peak the fleet ever needs.
        return ReactivePolicy(knob_value=ReactiveTargets().target_kv_cache_usage
                              if knob is None else knob,
                              max_replicas=2 * oracle.peak_replicas)
    if name == "predictive":
        return PredictivePolicy(
            knob_value=PlanSettings().headroom if knob is None else knob,
            capacity=CapacityModel(profile, slo_ttft_s=settings.slo_ttft_s,
                                   slo_target=settings.slo_target),
            forecaster=DemandForecaster(step_s=FORECAST_STEP_S),
            settings=PlannerSettings(
                PlanSettings(pod_startup_s=settings.pod_startup_s,
                             node_startup_s=settings.node_startup_s,
                             scale_down_window_s=settings.scale_down_window_s),
                ReplicaBounds(min_replicas=1, max_replicas=2 * oracle.peak_replicas),
                NodeShape(gpus_per_replica=settings.gpus_per_replica,
                          gpus_per_node=settings.gpus_per_node),
                decision_interval_s=settings.decision_interval_s))
    if name == "static":
        if knob is None:
            knob = float(oracle.peak_replicas)
        return StaticPolicy(knob_value=knob, gpus_per_replica=settings.gpus_per_replica,
                            gpus_per_node=settings.gpus_per_node)
    return oracle


def _load(args: argparse.Namespace
          ) -> tuple[RequestTrace | RateTrace, ReplaySettings, ReplicaProfile] | None:
    try:
        trace = read_trace(args.trace) if args.trace else builtin_workload()
        profile = load_profile(args.profile) if args.profile else default_profile()
    except (TraceError, ValueError, OSError) as exc:
        print(f"scaler: {exc}", file=sys.stderr)
        return None
    if args.rate_scale <= 0:
        print(f"scaler: --rate-scale must be > 0, got {args.rate_scale}", file=sys.stderr)
        return None
    if not args.scale_down_window >= 0:
        print(f"scaler: --scale-down-window must be >= 0 seconds, got {args.scale_down_window}",
              file=sys.stderr)
        return None
    if args.rate_scale != 1.0:
        trace = scale(trace, args.rate_scale)
        print(f"demand scaled x{args.rate_scale:g}: {trace.name}")
    settings = ReplaySettings(pod_startup_s=args.pod_startup, node_startup_s=args.node_startup,
                              slo_ttft_s=args.slo_ttft, slo_target=args.slo_target,
                              gpus_per_replica=args.gpus_per_replica,
                              gpus_per_node=args.gpus_per_node,
                              scale_down_window_s=args.scale_down_window)
    return trace, settings, profile


def _headline(result: ReplayResult, seconds: float) -> str:
    return (f"{result.policy} on {result.parameters['trace']}: {result.requests:,.0f} requests, "
            f"SLO attainment {result.slo_attainment:.2%}, TTFT p99 {result.ttft_p99_s:.2f} s, "
            f"{result.gpu_hours:.1f} GPU-h, {result.node_hours:.1f} node-h, "
            f"{result.scale_events} scale events ({seconds:.1f} s)")


def _progress_bar(label: str) -> Callable[[float], None]:
    """A one-line progress bar on stderr, shown only when the run takes over a second."""
    started = time.perf_counter()
    shown = False

    def show(fraction: float) -> None:
        nonlocal shown
        if not shown and time.perf_counter() - started < 1.0:
            return
        shown = True
        width = 30
        filled = int(width * fraction)
        end = "\n" if fraction >= 1.0 else ""
        sys.stderr.write(f"\r{label:<28} [{'#' * filled}{'.' * (width - filled)}] "
                         f"{fraction:4.0%}{end}")
        sys.stderr.flush()

    return show
