"""One workload's answer: reactive, raised by the plan; no ready pod is not missing data."""

from __future__ import annotations

from typing import Any

import pytest

from scaler.keda.metadata import WorkloadSpec, parse_metadata
from scaler.model.decision import decide_workload
from scaler.model.predictive import Plan
from scaler.model.reactive import FleetObservation, NoData, PodLoad


def rules(spec: WorkloadSpec) -> dict[str, Any]:
    return {"targets": spec.targets, "bounds": spec.bounds, "nodes": spec.nodes}


SPEC = parse_metadata({"endpoints": "http://pod:8000/metrics", "maxReplicas": "20"})


def plan(replicas: int, *, active: bool = True, nodes: int = 1) -> Plan:
    return Plan(replicas=replicas, nodes=nodes, active=active, need_now=replicas,
                need_ahead=replicas, forecast_mean=10.0, forecast_upper=12.0,
                reason=f"plan says {replicas}")


def pods(*waiting: float | None) -> FleetObservation:
    return FleetObservation({f"p{i}": None if w is None else PodLoad(w, 1.0, 0.1)
                             for i, w in enumerate(waiting)})


@pytest.mark.parametrize(("observation", "planned", "replicas", "desired", "active", "says"), [
    (pods(10, 10), None, 2, 4, True, "queue 10/replica"),  # reactive: 20 waiting / 5
    (pods(10, 10), plan(6), 2, 6, True, "plan says 6"),  # the plan adds
    (pods(10, 10), plan(1), 2, 1, True, "plan says 1"),  # the queue is the plan's to drain
    (pods(0, 0), plan(1), 2, 1, True, "plan says 1"),
    (pods(0), plan(30), 1, 20, True, "plan says 30"),  # bounded by maxReplicas
    (pods(), plan(3), 0, 3, True, "0 -> 3 (no ready pod): plan says 3"),  # woken at zero
    (pods(), plan(0, active=False), 0, 0, False, "no ready pod"),  # stays at zero
    (pods(), plan(0, active=False), 2, 0, False, "no ready pod"),  # the plan holds, not us
    (pods(), None, 2, 2, True, "no pod is ready yet; holding"),  # reactive, starting
    (pods(), None, 0, 0, False, "use policy predictive"),  # reactive at zero
])
def test_the_answer_by_case(observation, planned, replicas, desired, active, says):
    decision = decide_workload(observation, None if planned is None else lambda: planned,
                               **rules(SPEC), replicas=replicas, pods_listed=True)
    assert (decision.desired_replicas, decision.active) == (desired, active)
    assert says in decision.reason
    if planned is not None:
        assert decision.desired_nodes == planned.nodes


def test_stale_pods_are_no_decision_and_the_planner_is_not_stepped():
    stepped = []
    with pytest.raises(NoData):
        decide_workload(pods(None, None), lambda: stepped.append(1) or plan(1), **rules(SPEC),
                        replicas=2, pods_listed=True)
    assert stepped == []


@pytest.mark.parametrize(("metadata", "ttft_p95_s", "desired", "says"), [
    ({"targetTtftSeconds": "1"}, 3.0, 6, "ttft p95 3s vs SLO 1s"),  # ceil(3 / 1 x 2 pods)
    ({"targetTtftSeconds": "1"}, 0.5, 1, "plan says 1"),  # met: the TTFT signal never lowers
    ({"targetRunningPerReplica": "0.25"}, None, 8, "running 1/replica"),  # 4x over, 2 pods
    ({}, 3.0, 1, "plan says 1"),  # neither configured: the plan alone
])
def test_only_the_opt_in_signals_raise_a_plan(metadata, ttft_p95_s, desired, says):
    spec = parse_metadata({"endpoints": "http://pod:8000/metrics", **metadata})
    observation = FleetObservation(pods(10, 10).pods, ttft_p95_s=ttft_p95_s)
    decision = decide_workload(observation, lambda: plan(1), **rules(spec), replicas=2,
                               pods_listed=True)
    assert decision.desired_replicas == desired
    assert says in decision.reason


@pytest.mark.parametrize("planned", [None, plan(0, active=False)])
def test_no_pod_in_an_incomplete_list_is_no_decision(planned):
    """Static endpoints, a Prometheus query without series, a failing watch: none is unknown."""
    with pytest.raises(NoData, match="no pod found to read"):
        decide_workload(pods(), None if planned is None else lambda: planned, **rules(SPEC),
                        replicas=0, pods_listed=False)


def test_a_plan_never_goes_below_the_pods_there_are_while_some_lack_data():
    decision = decide_workload(pods(0, None, None, None), lambda: plan(2), **rules(SPEC),
                               replicas=4, pods_listed=True)
    assert (decision.desired_replicas, decision.active) == (4, True)
    assert "3 pod(s) without fresh data" in decision.reason
    more = decide_workload(pods(0, None), lambda: plan(6), **rules(SPEC), replicas=2,
                           pods_listed=True)
    assert more.desired_replicas == 6  # the plan may still add


@pytest.mark.parametrize(("bounds", "replicas", "held"), [
    ({"minReplicas": "2"}, 1, 2),
    ({"maxReplicas": "8"}, 12, 8),
])
def test_a_reactive_hold_without_ready_pods_keeps_the_bounds(bounds, replicas, held):
    spec = parse_metadata({"endpoints": "http://pod:8000/metrics", "policy": "reactive",
                           **bounds})
    decision = decide_workload(pods(), None, **rules(spec), replicas=replicas, pods_listed=True)
    assert (decision.desired_replicas, decision.active) == (held, True)


def test_a_hold_on_missing_data_holds_nodes_and_keeps_max_replicas():
    spec = parse_metadata({"endpoints": "http://pod:8000/metrics", "maxReplicas": "6",
                           "gpusPerReplica": "4"})
    decision = decide_workload(pods(0, None, None, None, None, None, None, None),
                               lambda: plan(1, nodes=1), **rules(spec), replicas=8,
                               pods_listed=True)
    assert decision.desired_replicas == 6  # held, but never above maxReplicas
    assert decision.desired_nodes == 3  # 6 replicas of 4 GPUs on 8-GPU nodes


def test_a_stuck_pod_is_known_not_missing_so_the_plan_may_scale_down():
    observation = FleetObservation(pods(0, None, 0).pods, unhealthy_pods=1)
    decision = decide_workload(observation, lambda: plan(2), **rules(SPEC), replicas=3,
                               pods_listed=True)
    assert decision.desired_replicas == 2
