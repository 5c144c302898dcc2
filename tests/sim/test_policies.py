"""The replay's policies on their own, outside a replay."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from scaler.config.profiles import default_profile
from scaler.model.capacity import CapacityModel
from scaler.model.reactive import PodLoad
from scaler.sim.hpa import SCALEDOBJECT_BEHAVIOR
from scaler.sim.policies import ClusterView, PredictivePolicy, ReactivePolicy, StaticPolicy
from scaler.sim.policies.reactive_capacity import CapacityPolicy
from scaler.sim.policy_catalog import make_policy
from scaler.sim.replay import ReplaySettings
from scaler.sim.traces import RateTrace

TRACE = RateTrace("steady", 600.0, np.arange(6) * 600.0, np.full(6, 80.0), np.full(6, 600.0),
                  np.full(6, 200.0))


def view(now_s: float = 0.0) -> ClusterView:
    return ClusterView(now_s=now_s, pods={}, replicas=0, ready_replicas=0, starting_replicas=0,
                       pending_replicas=0, nodes=0, ready_nodes=0, observed_rate=0.0,
                       mean_prompt_tokens=0.0, mean_output_tokens=0.0)


@pytest.mark.parametrize(("replicas", "gpus_per_replica", "nodes"), [
    (5, 3, 3),  # two whole 3-GPU replicas per 8-GPU node; 15 GPUs / 8 would say 2
    (6, 1, 1),
    (9, 1, 2),
    (3, 8, 3),
    (0, 3, 0),
])
def test_a_static_fleet_gets_the_nodes_that_hold_its_whole_replicas(
        replicas: int, gpus_per_replica: int, nodes: int) -> None:
    static = StaticPolicy(knob_value=replicas, gpus_per_replica=gpus_per_replica,
                          gpus_per_node=8)
    decision = static.decide(view())
    assert (decision.replicas, decision.nodes) == (replicas, nodes)


def busy(pods: dict[str, PodLoad], *, now_s: float = 0.0, rate: float = 0.0,
         replicas: int | None = None) -> ClusterView:
    count = len(pods) if replicas is None else replicas
    return ClusterView(now_s=now_s, pods=pods, replicas=count, ready_replicas=len(pods),
                       starting_replicas=0, pending_replicas=0, nodes=1, ready_nodes=1,
                       observed_rate=rate, mean_prompt_tokens=600.0, mean_output_tokens=200.0)


def pods(*loads: tuple[float, float]) -> dict[str, PodLoad]:
    return {f"p{i}": PodLoad(waiting, running, 0.1) for i, (waiting, running) in enumerate(loads)}


@pytest.mark.parametrize(("name", "knob", "loads", "rate", "replicas"), [
    ("reactive-queue", 4.0, ((10, 50), (9, 50)), 0.0, 5),  # ceil(19 / 4): waiting only
    ("reactive-concurrency", 40.0, ((10, 50), (9, 50)), 0.0, 3),  # ceil(119 / 40)
    ("reactive-rate", 10.0, ((0, 5), (0, 5)), 51.0, 6),  # ceil(51 / 10)
])
def test_a_signal_policy_asks_the_hpa_for_its_total_over_the_target(
        name: str, knob: float, loads: tuple[tuple[float, float], ...], rate: float,
        replicas: int) -> None:
    policy = make_policy(name, knob, TRACE, ReplaySettings(), default_profile())
    assert policy.name == name and policy.knob_value == knob
    assert policy.decide(busy(pods(*loads), rate=rate)).replicas == replicas


def test_the_rate_policy_reads_a_one_minute_rate_as_prometheus_gives_it() -> None:
    policy = make_policy("reactive-rate", 10.0, TRACE, ReplaySettings(), default_profile())
    answers = [policy.decide(busy(pods((0, 1)), now_s=15.0 * k, rate=rate, replicas=1)).replicas
               for k, rate in enumerate((10.0, 50.0))]
    assert answers == [1, 3]  # (10 + 50) / 2 = 30 req/s: 3 replicas, not 5


def test_a_signal_policy_without_ready_pods_leaves_the_count() -> None:
    policy = make_policy("reactive-queue", 1.0, TRACE, ReplaySettings(), default_profile())
    assert policy.decide(busy({}, replicas=3)).replicas == 3


def test_reactive_capacity_asks_for_what_the_capacity_model_needs_at_the_observed_demand(
        ) -> None:
    capacity = CapacityModel(default_profile(), slo_ttft_s=2.0, slo_target=0.99)
    need = capacity.replicas_for(1.5 * 80.0, 600.0, 200.0)
    assert need > 2
    policy = make_policy("reactive-capacity", 1.5, TRACE, ReplaySettings(), default_profile())
    assert isinstance(policy, CapacityPolicy) and policy.knob == "headroom"
    assert policy.decide(busy(pods((0, 5), (0, 5)), rate=80.0)).replicas == need
    assert policy.decide(busy({}, replicas=4)).replicas == 4  # demand unseen: hold


def test_reactive_is_the_kv_policys_former_name() -> None:
    policy = make_policy("reactive", 0.05, TRACE, ReplaySettings(), default_profile())
    assert isinstance(policy, ReactivePolicy) and policy.name == "reactive-kv"
    assert policy.knob == "targetKvCacheUsage"


def test_a_signal_policy_refuses_a_target_of_zero() -> None:
    with pytest.raises(ValueError, match="reactive-queue: waitingPerReplica must be > 0, got 0"):
        make_policy("reactive-queue", 0.0, TRACE, ReplaySettings(), default_profile())


def test_predictive_reaches_its_deployment_through_the_shipped_scaledobjects_hpa() -> None:
    """A plan of 21 over 20 running is carried out (the shipped ``tolerance: 0``); at a
    cluster's default tolerance (``--hpa-tolerance 0.1``) the HPA leaves it at 20."""
    settings = ReplaySettings(max_replicas=40)
    shipped = make_policy("predictive", None, TRACE, settings, default_profile())
    lenient = make_policy("predictive", None, TRACE,
                          dataclasses.replace(settings, hpa_tolerance=0.1), default_profile())
    assert isinstance(shipped, PredictivePolicy) and isinstance(lenient, PredictivePolicy)
    assert shipped.hpa.behavior == SCALEDOBJECT_BEHAVIOR
    asked = {"current_replicas": 20, "metric_value": 21.0, "target_value": 1.0}
    assert shipped.hpa.desired(0.0, **asked) == 21  # type: ignore[arg-type]
    assert lenient.hpa.desired(0.0, **asked) == 20  # type: ignore[arg-type]
