"""The flags `scaler replay` and `scaler bench` share (argparse only: cheap to import).

Each value is checked while parsing (``scaler.commands.flag_types``); what involves several
flags (a replica's GPUs on one node, the knob's range for the chosen policy) is checked by
``check_replay_flags`` right after, so a bad command line is one line and exit 2.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

from scaler import schema
from scaler.commands.flag_types import checked, from_setting, positive, share
from scaler.config.profiles import DEFAULT_PROFILE, named_or_file
from scaler.model.profile import ReplicaProfile
from scaler.model.specs import NodeShape, PlanSettings, ReactiveTargets
from scaler.sim.knobs import KNOB_RANGES

REPLAY_POLICIES = ("reactive-kv", "reactive-queue", "reactive-concurrency", "reactive-rate",
                   "reactive-capacity", "predictive", "static", "oracle")
POLICY_CHOICES = (*REPLAY_POLICIES, "reactive")  # "reactive": reactive-kv's former name
_PLAN = PlanSettings()



def _setting_range(cls: type[object], name: str, key: str) -> tuple[str, schema.Check]:
    """(key, check) of a declared setting, for a flag that sets the same thing."""
    (field,) = [f for f in schema.declared(cls) if f.name == name]
    assert field.setting.check is not None, f"{cls.__name__}.{name} declares no check"
    return key, field.setting.check


def _within(key: str, policy: str) -> tuple[str, schema.Check]:
    """(key, check) of a knob held to the range ``scaler bench`` searches it in."""
    low, high = KNOB_RANGES[policy]
    return key, lambda v: None if low <= v <= high else f"must be >= {low:g} and <= {high:g}"


# Each policy's --knob: what it sets and the values accepted (the declared setting's own
# check where there is one); None: the policy has no knob.
KNOBS: dict[str, tuple[str, schema.Check] | None] = {
    "reactive-kv": _setting_range(ReactiveTargets, "target_kv_cache_usage",
                                  "targetKvCacheUsage"),
    "reactive-queue": _within("waitingPerReplica", "reactive-queue"),
    "reactive-concurrency": _within("concurrencyPerReplica", "reactive-concurrency"),
    "reactive-rate": _within("requestsPerSecondPerReplica", "reactive-rate"),
    "reactive-capacity": _within("headroom", "reactive-capacity"),
    "predictive": _setting_range(PlanSettings, "headroom", "headroom"),
    "static": ("replicas", lambda v: None if v >= 1 and v == int(v) else
               "must be a whole number >= 1"),
    "oracle": _within("planned miss share", "oracle"),
}
KNOBS["reactive"] = KNOBS["reactive-kv"]


def profile_flag(text: str) -> ReplicaProfile:
    """``--profile``: a shipped profile's name or a profile YAML's path."""
    try:
        return named_or_file(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_replay_arguments(parser: argparse.ArgumentParser, *, bench: bool) -> None:
    parser.add_argument("--trace", type=Path, help="trace CSV (default: built-in synthetic)")
    parser.add_argument("--policy", action="append", choices=POLICY_CHOICES,
                        help="policy to run (repeatable; default: all)"
                        if bench else "policy to run (default: reactive-kv)")
    parser.add_argument("--out", type=Path, default=Path("out/replay" if not bench else
                                                          "out/bench"), help="output folder")
    parser.add_argument("--rate-scale", type=positive(), default=1.0,
                        help="multiply demand by this (said in the output)")
    parser.add_argument("--pod-startup", type=from_setting(PlanSettings, "pod_startup_s"),
                        default=_PLAN.pod_startup_s, help="seconds")
    parser.add_argument("--node-startup", type=from_setting(PlanSettings, "node_startup_s"),
                        default=_PLAN.node_startup_s, help="seconds")
    parser.add_argument("--scale-down-window",
                        type=from_setting(PlanSettings, "scale_down_window_s"),
                        default=_PLAN.scale_down_window_s,
                        help="seconds; the predictive plan's scaleDownWindowSeconds")
    parser.add_argument("--slo-ttft", type=from_setting(PlanSettings, "slo_ttft_s"),
                        default=_PLAN.slo_ttft_s, help="seconds")
    parser.add_argument("--slo-target", type=share, default=0.99,
                        help="share of requests that must meet the TTFT SLO")
    parser.add_argument("--gpus-per-replica", type=from_setting(NodeShape, "gpus_per_replica"),
                        help="GPUs one replica uses (default: the profile's gpus)")
    parser.add_argument("--gpus-per-node", type=from_setting(NodeShape, "gpus_per_node"),
                        default=NodeShape().gpus_per_node, help="GPUs one node has")
    parser.add_argument("--profile", type=profile_flag, default=DEFAULT_PROFILE,
                        help="replica profile: a shipped name or a YAML file")
    if not bench:
        parser.add_argument("--knob", type=checked(float, None, "a number"),
                            help="the policy's main knob (reactive-kv: targetKvCacheUsage, "
                                 "reactive-queue: waiting per replica, reactive-concurrency: "
                                 "running + waiting per replica, reactive-rate: requests/s per "
                                 "replica, reactive-capacity and predictive: headroom, static: "
                                 "replicas, oracle: planned miss share)")
    add_replica_bound_arguments(parser)
    _add_fleet_arguments(parser)
    parser.set_defaults(check=functools.partial(check_replay_flags, parser))


def check_replay_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What involves several flags; ``parser.error`` (one line, exit 2) on the first problem."""
    if args.gpus_per_replica is None:
        args.gpus_per_replica = args.profile.gpus
    if args.gpus_per_replica > args.gpus_per_node:
        parser.error(f"argument --gpus-per-replica: {args.gpus_per_replica} is more than "
                     f"--gpus-per-node {args.gpus_per_node}: one replica's GPUs must fit on "
                     "one node")
    if "knob" not in args:  # bench: every policy at each knob it sweeps
        return
    policies = args.policy or ["reactive"]
    if len(policies) > 1:
        parser.error("argument --policy: replay runs one policy (given "
                     f"{', '.join(policies)}); scaler bench compares several")
    problem = None if args.knob is None else knob_problem(policies[0], args.knob)
    if problem:
        parser.error(f"argument --knob: {problem}")


def knob_problem(policy: str, knob: float) -> str | None:
    """Why ``knob`` cannot be ``policy``'s knob, or None."""
    if policy not in KNOBS:
        return None
    known = KNOBS[policy]
    if known is None:
        return f"--policy {policy} has no knob; drop --knob"
    name, check = known
    reason = check(knob)
    if reason:
        return f"{knob:g} is out of range for --policy {policy} ({name}): {reason}"
    return None


# --------------------------------------------------------------------------- replica bounds
# The autoscaling policies' minReplicaCount/maxReplicaCount (reactive and predictive; static
# holds its knob and the oracle its need). The default cap is what an operator would set:
# twice the most replicas the trace ever needs (the oracle's peak), resolved per trace.


_REPLICAS = positive(int, "a whole number of replicas")


def add_replica_bound_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min-replicas", type=_REPLICAS, default=1,
                        metavar="N", help="fewest replicas the autoscaling policies ask for "
                                          "(default 1)")
    parser.add_argument("--max-replicas", type=_REPLICAS, default=None,
                        metavar="N", help="most replicas the autoscaling policies ask for "
                                          "(default: 2x the oracle's peak on the trace)")



# -- the simulated pods against the profile the scaler starts from (issue 15, item 3) ----------


_FLEET_SPEED = positive(float, "a number (1: the profile's speed)")
_TOLERANCE = checked(float, lambda v: None if 0 <= v < 1 else "must be >= 0 and < 1",
                     "a fraction in [0, 1), e.g. 0.1")


def _add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fleet-speed", type=_FLEET_SPEED, default=1.0, metavar="X",
                        help="the simulated pods serve X times as fast as the profile the "
                             "scaler starts from (> 0; default 1); the oracle plans with "
                             "their true speed")
    parser.add_argument("--hpa-tolerance", type=_TOLERANCE, default=0.0, metavar="T",
                        help="the predictive policy's HPA tolerance, both ways (default 0, as "
                             "the shipped ScaledObject sets it; 0.1 for a cluster without "
                             "HPAConfigurableTolerance, which ignores the setting)")
    parser.add_argument("--no-gpu-metrics", action="store_true",
                        help="the scaler sees no dcgm-exporter data from the simulated pods")

