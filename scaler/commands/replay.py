"""`scaler replay`: a what-if run of one scaling policy on a trace.

`scaler replay` and `scaler bench` take the same flags (durations in seconds) so scripts
can rely on them:
``--trace --policy --out --rate-scale --pod-startup --node-startup --slo-ttft
--gpus-per-replica --gpus-per-node``. Without ``--trace`` the built-in seeded
synthetic workload is used.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from scaler.config.profiles import default_profile, load_profile
from scaler.model.profile import ReplicaProfile
from scaler.sim.policy_catalog import make_policy
from scaler.sim.replay import ReplaySettings, replay
from scaler.sim.report import write_outputs
from scaler.sim.results import ReplayResult
from scaler.sim.synthetic import synthetic_workload as builtin_workload
from scaler.sim.traces import RateTrace, RequestTrace, TraceError, read_trace, scale


def run_replay(args: argparse.Namespace) -> int:
    loaded = load_replay_inputs(args)
    if loaded is None:
        return 2
    trace, settings, profile = loaded
    name = (args.policy or ["reactive"])[0]
    policy = make_policy(name, args.knob, trace, settings, profile)
    started = time.perf_counter()
    result = replay(trace, policy, settings=settings, profile=profile,
                    progress=progress_bar(f"replay {name}"))
    result.parameters["rate_scale"] = args.rate_scale
    paths = write_outputs(result, args.out)
    print(_headline(result, time.perf_counter() - started))
    for path in paths.values():
        print(f"  {path}")
    return 0


def load_replay_inputs(args: argparse.Namespace
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
                              scale_down_window_s=args.scale_down_window,
                              fleet_speed=args.fleet_speed,
                              gpu_metrics=not args.no_gpu_metrics)
    return trace, settings, profile


def _headline(result: ReplayResult, seconds: float) -> str:
    return (f"{result.policy} on {result.parameters['trace']}: {result.requests:,.0f} requests, "
            f"SLO attainment {result.slo_attainment:.2%}, TTFT p99 {result.ttft_p99_s:.2f} s, "
            f"{result.gpu_hours:.1f} GPU-h, {result.node_hours:.1f} node-h, "
            f"{result.scale_events} scale events ({seconds:.1f} s)")


def progress_bar(label: str) -> Callable[[float], None]:
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
