"""`scaler replay`: a what-if run of one scaling policy on a trace.

`scaler replay` and `scaler bench` take the same flags (durations in seconds) so scripts
can rely on them:
``--trace --policy --out --rate-scale --pod-startup --node-startup --slo-ttft
--gpus-per-replica --gpus-per-node --min-replicas --max-replicas``. Without ``--trace`` the
built-in seeded synthetic workload is used.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

from scaler.model.profile import ReplicaProfile
from scaler.sim.policy_catalog import make_policy, max_replicas
from scaler.sim.replay import ReplaySettings, make_oracle, replay
from scaler.sim.report import bounds_text, knob_text, replica_cap, trace_name, write_outputs
from scaler.sim.results import ReplayResult
from scaler.sim.slo_causes import slo_verdict
from scaler.sim.synthetic import synthetic_workload as builtin_workload
from scaler.sim.traces import RateTrace, RequestTrace, TraceError, describe, read_trace, scale


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
    result.parameters["max_replicas_from"] = (
        "--max-replicas" if args.max_replicas is not None
        else f"2x the oracle's peak of {result.parameters['max_replicas'] // 2}")
    paths = write_outputs(result, args.out)
    print(headline(result, time.perf_counter() - started))
    verdict = slo_verdict(result, max_replicas=replica_cap(result))
    if verdict:
        print(verdict)
    for path in paths.values():
        print(f"  {path}")
    return 0


def load_replay_inputs(args: argparse.Namespace
          ) -> tuple[RequestTrace | RateTrace, ReplaySettings, ReplicaProfile] | None:
    """The trace, settings and profile the flags ask for; None after a one-line error.

    The settings' ``max_replicas`` comes back resolved (the default cap is twice the oracle's
    peak on this trace), so every output can say the cap the run had.
    """
    try:
        trace = read_trace(args.trace) if args.trace else builtin_workload()
        profile = args.profile  # read by the parser (a shipped name or a file)
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
    print(describe(trace))
    settings = ReplaySettings(pod_startup_s=args.pod_startup, node_startup_s=args.node_startup,
                              slo_ttft_s=args.slo_ttft, slo_target=args.slo_target,
                              gpus_per_replica=args.gpus_per_replica,
                              gpus_per_node=args.gpus_per_node,
                              scale_down_window_s=args.scale_down_window,
                              min_replicas=args.min_replicas, max_replicas=args.max_replicas,
                              fleet_speed=args.fleet_speed,
                              gpu_metrics=not args.no_gpu_metrics,
                              hpa_tolerance=args.hpa_tolerance)
    return _with_replica_cap(trace, settings, profile)


def _with_replica_cap(trace: RequestTrace | RateTrace, settings: ReplaySettings,
                      profile: ReplicaProfile
                      ) -> tuple[RequestTrace | RateTrace, ReplaySettings, ReplicaProfile] | None:
    """Resolve the default cap on this trace; refuse a minimum above the cap."""
    peak = make_oracle(trace, settings=settings, profile=profile).peak_replicas
    cap = max_replicas(settings, peak)
    if settings.min_replicas > cap:
        which = (f"--max-replicas {cap}" if settings.max_replicas is not None else
                 f"the default cap {cap} (2x the oracle's peak); give --max-replicas too")
        print(f"scaler: --min-replicas {settings.min_replicas} is above {which}",
              file=sys.stderr)
        return None
    return trace, dataclasses.replace(settings, max_replicas=cap), profile


def headline(result: ReplayResult, seconds: float) -> str:
    """The run in one line: policy and knob, trace, the results, the replica bounds."""
    return (f"{result.policy} (knob {knob_text(result.parameters)}) on {trace_name(result)}: "
            f"{result.requests:,.0f} requests, SLO attainment {result.slo_attainment:.2%}, "
            f"TTFT p99 {_seconds(result.ttft_p99_s)}, {result.gpu_hours:.1f} GPU-h, "
            f"{result.node_hours:.1f} node-h, {result.scale_events:,} scale events; "
            f"{bounds_text(result)} ({seconds:.1f} s)")


def _seconds(value: float) -> str:
    return f"{value:.2f} s" if math.isfinite(value) else "never (no capacity)"


def progress_bar(label: str, *, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> Callable[[float], None]:
    """Progress of one run on stderr, shown only when the run takes over a second.

    On a terminal: a bar redrawn in place. Anywhere else (a file, a pipe, CI's log) frames
    redrawn with ``\\r`` are noise, so only one line when the run ends.
    """
    out = stream if stream is not None else sys.stderr
    started = clock()
    shown = False
    on_terminal = out.isatty()

    def show(fraction: float) -> None:
        nonlocal shown
        if not shown and clock() - started < 1.0:
            return
        shown = True
        if not on_terminal:
            if fraction >= 1.0:
                out.write(f"{label}: done in {clock() - started:.1f} s\n")
                out.flush()
            return
        width = 30
        filled = int(width * fraction)
        end = "\n" if fraction >= 1.0 else ""
        out.write(f"\r{label:<28} [{'#' * filled}{'.' * (width - filled)}] "
                  f"{fraction:4.0%}{end}")
        out.flush()

    return show
