"""The flags `scaler replay` and `scaler bench` share (argparse only: cheap to import)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from scaler.model.specs import NodeShape, PlanSettings

REPLAY_POLICIES = ("reactive", "predictive", "static", "oracle")
_PLAN, _NODES = PlanSettings(), NodeShape()


def add_replay_arguments(parser: argparse.ArgumentParser, *, bench: bool) -> None:
    parser.add_argument("--trace", type=Path, help="trace CSV (default: built-in synthetic)")
    parser.add_argument("--policy", action="append", choices=REPLAY_POLICIES,
                        help="policy to run (repeatable; bench default: all)"
                        if bench else "policy to run (default reactive)")
    parser.add_argument("--out", type=Path, default=Path("out/replay" if not bench else
                                                          "out/bench"), help="output folder")
    parser.add_argument("--rate-scale", type=float, default=1.0,
                        help="multiply demand by this (said in the output)")
    parser.add_argument("--pod-startup", type=float, default=_PLAN.pod_startup_s, help="seconds")
    parser.add_argument("--node-startup", type=float, default=_PLAN.node_startup_s, help="seconds")
    parser.add_argument("--scale-down-window", type=float, default=_PLAN.scale_down_window_s,
                        help="seconds; the predictive plan's scaleDownWindowSeconds")
    parser.add_argument("--slo-ttft", type=float, default=_PLAN.slo_ttft_s, help="seconds")
    parser.add_argument("--slo-target", type=float, default=0.99,
                        help="share of requests that must meet the TTFT SLO")
    parser.add_argument("--gpus-per-replica", type=int, default=_NODES.gpus_per_replica)
    parser.add_argument("--gpus-per-node", type=int, default=_NODES.gpus_per_node)
    parser.add_argument("--profile", type=Path, help="replica profile YAML (default 8B/H100)")
    _add_fleet_arguments(parser)
    if not bench:
        parser.add_argument("--knob", type=float,
                            help="the policy's main knob (reactive: targetKvCacheUsage, "
                                 "predictive: headroom, static: replicas)")


# -- the simulated pods against the profile the scaler starts from (issue 15, item 3) ----------


def _add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fleet-speed", type=_fleet_speed, default=1.0, metavar="X",
                        help="the simulated pods serve X times as fast as the profile the "
                             "scaler starts from (> 0; default 1); the oracle plans with "
                             "their true speed")
    parser.add_argument("--no-gpu-metrics", action="store_true",
                        help="the scaler sees no dcgm-exporter data from the simulated pods")


def _fleet_speed(raw: str) -> float:
    """``--fleet-speed``: a finite number > 0."""
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number > 0 (1: the profile's speed), "
                                         f"got {raw!r}")
    return value
