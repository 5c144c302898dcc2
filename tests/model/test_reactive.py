"""The reactive policy, case by case, as the HPA replica calculator's own tests read."""

from __future__ import annotations

import pytest

from scaler.keda.metadata import parse_metadata
from scaler.model.reactive import FleetObservation, NoData, PodLoad, decide
from scaler.model.specs import ReactiveTargets, ReplicaBounds


def spec(**keys: str) -> tuple[ReactiveTargets, ReplicaBounds]:
    endpoints = ",".join(f"http://10.0.0.{i}:8000/metrics" for i in range(1, 9))
    parsed = parse_metadata({"endpoints": endpoints, **keys})
    return parsed.targets, parsed.bounds


def fleet(*loads: PodLoad | None, ttft: float | None = None) -> FleetObservation:
    return FleetObservation({f"pod-{i}": load for i, load in enumerate(loads)}, ttft)


def pod(waiting: float = 0, running: float = 0, kv: float | None = 0.0) -> PodLoad:
    return PodLoad(waiting, running, kv)


@pytest.mark.parametrize(
    ("loads", "desired", "signal"),
    [
        # 2 pods, 10 waiting each, target 5: sum 20 / 5 = 4 replicas.
        ([pod(10, kv=0.5), pod(10, kv=0.5)], 4, "queue"),
        # KV-cache at 0.96 on 3 pods, target 0.8: ceil(3 * 1.2) = 4.
        ([pod(kv=0.96), pod(kv=0.96), pod(kv=0.96)], 4, "kv_cache"),
        # Within 10% of target on every signal: no change (kv 0.84 / 0.8 = 1.05).
        ([pod(5, kv=0.84), pod(5, kv=0.84)], 2, "queue"),
        # Light load: KV 0.2 on 4 pods -> ceil(4 * 0.25) = 1.
        ([pod(kv=0.2)] * 4, 1, "kv_cache"),
        # Idle: nothing waiting, empty cache -> 0 (min replicas 0).
        ([pod(), pod()], 0, "queue"),
    ],
)
def test_desired_replicas_follow_the_largest_signal(loads, desired, signal):
    decision = decide(fleet(*loads), *spec())
    assert decision.desired_replicas == desired
    top = max(decision.proposals, key=lambda p: p.replicas)
    assert top.signal == signal


def test_missing_pod_counts_as_zero_when_scaling_up():
    # 3 pods; 2 report 20 waiting, 1 is missing. Ratio 20/5 = 4 -> up; missing as 0:
    # (40 + 0) / 3 / 5 = 2.67 -> ceil(2.67 * 3) = 8 (not 12 as if the missing pod were busy).
    decision = decide(fleet(pod(20, kv=0.5), pod(20, kv=0.5), None), *spec())
    assert decision.desired_replicas == 8


def test_missing_pod_counts_as_at_target_when_scaling_down():
    # 4 pods; 3 at KV 0.1, 1 missing. Down-ratio; missing pod assumed at target 0.8:
    # (0.3 + 0.8) / 4 / 0.8 = 0.34 -> ceil(0.34 * 4) = 2, not 1.
    decision = decide(fleet(pod(kv=0.1), pod(kv=0.1), pod(kv=0.1), None), *spec())
    kv = next(p for p in decision.proposals if p.signal == "kv_cache")
    assert kv.replicas == 2
    assert decision.desired_replicas == 2


def test_missing_pods_that_flip_the_direction_hold_the_count():
    # 2 pods at KV 0.9 (ratio 1.125: up), 2 missing -> as 0: 1.8/4/0.8 = 0.56 < 1: flipped.
    decision = decide(fleet(pod(kv=0.9), pod(kv=0.9), None, None), *spec())
    kv = next(p for p in decision.proposals if p.signal == "kv_cache")
    assert kv.replicas == 4


def test_missing_pods_never_lower_the_count_below_what_the_others_justify():
    # Most pods missing and the rest idle: the missing ones at target keep the count.
    decision = decide(fleet(pod(), None, None, None), *spec())
    assert decision.desired_replicas >= 3


def test_no_fresh_pod_is_no_decision():
    with pytest.raises(NoData, match="none of the 2 pod"):
        decide(fleet(None, None), *spec())


def test_no_signal_at_all_is_no_decision():
    # KV missing everywhere and queue given: queue still decides.
    assert decide(fleet(pod(10, kv=None)), *spec()).desired_replicas == 2


def test_min_and_max_bound_the_answer():
    busy = fleet(*[pod(100, kv=1.0)] * 4)
    assert decide(busy, *spec(maxReplicas="6")).desired_replicas == 6
    assert decide(fleet(pod(), pod()), *spec(minReplicas="2")).desired_replicas == 2
    assert "bounded" in decide(busy, *spec(maxReplicas="6")).reason


def test_running_target_is_off_by_default_and_used_when_set():
    loads = fleet(pod(0, running=100, kv=0.1), pod(0, running=100, kv=0.1))
    assert decide(loads, *spec()).desired_replicas == 1
    assert decide(loads, *spec(targetRunningPerReplica="50")).desired_replicas == 4


def test_ttft_slo_only_adds_replicas():
    loads = fleet(pod(kv=0.8), pod(kv=0.8))
    assert decide(loads, *spec()).desired_replicas == 2
    slow = FleetObservation(loads.pods, ttft_p95_s=4.0)
    assert decide(slow, *spec(targetTtftSeconds="2")).desired_replicas == 4
    fast = FleetObservation(fleet(pod(kv=0.1), pod(kv=0.1)).pods, ttft_p95_s=0.1)
    assert decide(fast, *spec(targetTtftSeconds="2")).desired_replicas == 1


@pytest.mark.parametrize(
    ("loads", "threshold", "active"),
    [
        ([pod(), pod()], "0", False),
        ([pod(1), pod()], "0", True),
        ([pod(0, running=1), pod()], "0", True),
        ([pod(2, running=1), pod()], "3", False),
        ([pod(2, running=2), pod()], "3", True),
        ([pod(), None], "0", True),  # a pod we cannot see is never assumed idle
    ],
)
def test_activity(loads, threshold, active):
    assert decide(fleet(*loads), *spec(activationThreshold=threshold)).active is active


def test_tolerance_is_configurable():
    loads = fleet(pod(kv=0.88), pod(kv=0.88))  # ratio 1.1
    assert decide(loads, *spec(tolerance="0.1")).desired_replicas == 2
    assert decide(loads, *spec(tolerance="0.05")).desired_replicas == 3
