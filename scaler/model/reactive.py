"""Reactive replica policy: the Kubernetes HPA replica calculator, for vLLM signals.

Pure: no I/O, no clock, no asyncio; the service and the replay both call it.

Each signal has a per-replica target (waiting requests, KV-cache use, running
requests). For each signal, as the HPA does for each metric:

* ``usage_ratio = mean(value over pods with data) / target``;
* within ``tolerance`` of 1: keep the current count;
* pods without data (down, stale, garbage) are *missing*: when the ratio says
  scale down they count as exactly at target, when it says scale up they count
  as 0; the ratio is recomputed, and if that flips the direction or lands
  within tolerance, the count stays as it is;
* otherwise ``ceil(ratio * pods)``.

The desired count is the largest proposal of all signals, then bounded by
min/max. The TTFT signal is fleet-wide and only ever adds replicas: latency
falls with load in no linear way, so it must not drive scale-down.

A workload where no pod has data gets no decision at all (``NoData``): the
caller answers with an error so KEDA's fallback applies instead of a made-up
number, and missing data can never cause a scale-down.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scaler.model.specs import ReactiveTargets, ReplicaBounds


@dataclass(frozen=True)
class PodLoad:
    """One pod's latest fresh readings; ``None`` for the whole pod means no fresh data."""

    waiting: float
    running: float
    kv_cache_usage: float | None


@dataclass(frozen=True)
class FleetObservation:
    pods: Mapping[str, PodLoad | None]
    ttft_p95_s: float | None = None
    unhealthy_pods: int = 0  # of the pods without a load: fresh, but stuck (known, not missing)

    @property
    def current_replicas(self) -> int:
        return len(self.pods)


@dataclass(frozen=True)
class Proposal:
    signal: str
    replicas: int
    usage_ratio: float
    detail: str


@dataclass(frozen=True)
class Decision:
    desired_replicas: int
    active: bool
    reason: str
    proposals: tuple[Proposal, ...]
    desired_nodes: int | None = None  # the predictive node plan, when there is one


class NoData(Exception):
    """No pod of the workload has fresh data: no decision can be made."""


def decide(observation: FleetObservation, targets: ReactiveTargets,
           bounds: ReplicaBounds) -> Decision:
    fresh = [load for load in observation.pods.values() if load is not None]
    if not fresh:
        raise NoData(f"none of the {observation.current_replicas} pod(s) has fresh metrics")
    proposals = [p for p in _proposals(observation, targets) if p is not None]
    if not proposals:
        raise NoData("no pod reports any of the signals the targets use")
    top = max(proposals, key=lambda p: p.replicas)
    desired = min(max(top.replicas, bounds.min_replicas), bounds.max_replicas)
    reason = _reason(observation.current_replicas, desired, top, bounds)
    return Decision(desired, _is_active(observation, targets), reason, tuple(proposals))


def _proposals(observation: FleetObservation, targets: ReactiveTargets) -> list[Proposal | None]:
    pods = observation.pods
    current = observation.current_replicas
    proposals = [
        _per_pod_signal("queue", _values(pods, "waiting"), targets.target_queue_per_replica,
                        current, targets.tolerance),
        _per_pod_signal("kv_cache", _values(pods, "kv_cache_usage"), targets.target_kv_cache_usage,
                        current, targets.tolerance),
    ]
    if targets.target_running_per_replica > 0:
        proposals.append(_per_pod_signal("running", _values(pods, "running"),
                                         targets.target_running_per_replica, current,
                                         targets.tolerance))
    if targets.target_ttft_s > 0 and observation.ttft_p95_s is not None:
        proposals.append(_ttft_signal(observation.ttft_p95_s, targets, current))
    return proposals


def _values(pods: Mapping[str, PodLoad | None], attribute: str) -> list[float | None]:
    """Per pod: the reading, or None where the pod (or this one signal) has no data."""
    return [None if load is None else getattr(load, attribute) for load in pods.values()]


def _per_pod_signal(
    signal: str, values: Sequence[float | None], target: float, current: int, tolerance: float
) -> Proposal | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    missing = len(values) - len(present)
    ratio = sum(present) / len(present) / target
    detail = f"{signal} {sum(present) / len(present):.3g}/replica vs target {target:g}"
    if missing == 0:
        if abs(ratio - 1.0) <= tolerance:
            return Proposal(signal, current, ratio, detail + " (within tolerance)")
        return Proposal(signal, math.ceil(ratio * len(present) - 1e-9), ratio, detail)
    return _with_missing_pods(signal, present, missing, target, current, tolerance, ratio, detail)


def _with_missing_pods(
    signal: str, present: list[float], missing: int, target: float, current: int,
    tolerance: float, ratio: float, detail: str,
) -> Proposal:
    scaling_up = ratio > 1.0
    assumed = 0.0 if scaling_up else target
    total = sum(present) + assumed * missing
    new_ratio = total / (len(present) + missing) / target
    detail += f"; {missing} pod(s) without data counted as {assumed:g}"
    flipped = (new_ratio < 1.0) if scaling_up else (new_ratio > 1.0)
    if abs(ratio - 1.0) <= tolerance or abs(new_ratio - 1.0) <= tolerance or flipped:
        return Proposal(signal, current, new_ratio, detail + " (held)")
    return Proposal(signal, math.ceil(new_ratio * (len(present) + missing) - 1e-9), new_ratio,
                    detail)


def _ttft_signal(ttft_p95_s: float, targets: ReactiveTargets, current: int) -> Proposal:
    ratio = ttft_p95_s / targets.target_ttft_s
    detail = f"ttft p95 {ttft_p95_s:.3g}s vs SLO {targets.target_ttft_s:g}s"
    if ratio <= 1.0 + targets.tolerance:
        return Proposal("ttft", 0, ratio, detail + " (met; never scales down)")
    return Proposal("ttft", math.ceil(ratio * max(current, 1) - 1e-9), ratio, detail)


def _is_active(observation: FleetObservation, targets: ReactiveTargets) -> bool:
    """Work in flight above the threshold, or a pod we cannot see (we never guess idle)."""
    loads = observation.pods.values()
    if any(load is None for load in loads):
        return True
    in_flight = sum(load.waiting + load.running for load in loads if load is not None)
    return in_flight > targets.activation_threshold


def _reason(current: int, desired: int, top: Proposal, bounds: ReplicaBounds) -> str:
    bounded = ""
    if desired != top.replicas:
        bounded = f", bounded to [{bounds.min_replicas}, {bounds.max_replicas}]"
    return f"{current} -> {desired}: {top.detail}{bounded}"
