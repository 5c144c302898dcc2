"""One workload's answer: the reactive decision, or the predictive plan.

Pure (no I/O, no clock, no asyncio); the service and the replay both call
``decide_workload`` so the replay measures what the service answers.

* Ready pods with data: the reactive decision (``scaler.model.reactive.decide``). A predictive
  workload follows its plan, whose reactive part (the fewest replicas meeting the TTFT SLO at
  the observed demand plus the backlog drained within ``drain_s``) already answers queues; of
  the reactive signals only the opt-in ones (``targetTtftSeconds``,
  ``targetRunningPerReplica``) may raise it. The HPA rule on queue length and KV-cache use
  (``ceil(value / target x pods)``) fights the capacity model: a replica run as hot as the SLO
  allows keeps a queue above the target, and a queue drains faster than linearly in the
  replicas added, so the rule overshoots by several times (measured in BENCHMARKS.md, "How
  much of the gap is the forecast"). Its proposals are still shown.
* Ready pods, none with fresh data: ``NoData`` (the caller answers UNAVAILABLE so KEDA's
  fallback applies). Some without: the reactive rule counts them as described in
  ``scaler.model.reactive``; a predictive plan may still add replicas but never goes below the
  replicas there are. Missing data never scales anything down.
* No ready pod at all, in a complete pod list (``pods_listed``: the Kubernetes API's, synced
  and not failing): the workload is at zero, or every replica is still starting; nothing is
  missing. A predictive workload follows its plan, which is how a forecast ramp wakes a
  workload at zero one lead time early; a reactive one holds the replicas starting (within its
  bounds), or stays at zero (it cannot see demand without a pod). Without a complete list
  (static endpoints, a Prometheus query that found no series, a failing watch) no pod is
  missing data: ``NoData``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from scaler.model.nodes import nodes_for
from scaler.model.predictive import Plan
from scaler.model.reactive import Decision, FleetObservation, NoData, Proposal, decide
from scaler.model.specs import NodeShape, ReactiveTargets, ReplicaBounds


def decide_workload(observation: FleetObservation, make_plan: Callable[[], Plan] | None, *,
                    targets: ReactiveTargets, bounds: ReplicaBounds, nodes: NodeShape,
                    replicas: int, pods_listed: bool) -> Decision:
    """``make_plan``: the predictive planner's step, None for a reactive workload; it is called
    only once there is something to decide, so missing data teaches the forecaster nothing.
    ``replicas``: the scale target's count now (ready or not). ``pods_listed``: the
    observation's pods are the complete list of ready pods, so none means none."""
    if not observation.pods:
        if not pods_listed:
            raise NoData("no pod found to read (the pod list is not known)")
        return _without_ready_pods(bounds, None if make_plan is None else make_plan(), replicas)
    reactive = decide(observation, targets, bounds)
    if make_plan is None:
        return reactive
    decision = _with_plan(reactive, make_plan(), bounds.max_replicas, observation.current_replicas)
    missing = sum(load is None for load in observation.pods.values()) - observation.unhealthy_pods
    held = min(observation.current_replicas, bounds.max_replicas)
    if missing > 0 and decision.desired_replicas < held:
        held_nodes = min(shape_nodes_for(held, nodes), nodes.max_nodes)
        asked = max(decision.desired_nodes or 0, held_nodes)
        return Decision(held, True, f"{held} -> {held}: {missing} pod(s) without fresh data; "
                        "never scaling down on missing data", decision.proposals, asked)
    return decision


def shape_nodes_for(replicas: int, shape: NodeShape) -> int:
    """Nodes holding ``replicas`` replicas of this workload, as its node plan counts them."""
    return nodes_for(replicas, gpus_per_replica=shape.gpus_per_replica,
                     gpus_per_node=shape.gpus_per_node, spare_nodes=shape.spare_nodes)


RAISING_SIGNALS = frozenset({"ttft", "running"})
"""Reactive signals that may raise a predictive workload's plan (both off unless configured)."""


def _with_plan(reactive: Decision, plan: Plan, max_replicas: int, current: int) -> Decision:
    raising = [p for p in reactive.proposals if p.signal in RAISING_SIGNALS]
    top = max(raising, key=lambda p: p.replicas, default=None)
    desired = min(max(plan.replicas, top.replicas if top else 0), max_replicas)
    reason = (f"{current} -> {desired}: {top.detail}" if top and top.replicas > plan.replicas
              else f"{current} -> {desired}: {plan.reason}")
    proposals = (*reactive.proposals, *_plan_proposals(plan))
    return Decision(desired, reactive.active or plan.active, reason, proposals, plan.nodes)


def _without_ready_pods(bounds: ReplicaBounds, plan: Plan | None, replicas: int) -> Decision:
    if plan is not None:
        reason = f"{replicas} -> {plan.replicas} (no ready pod): {plan.reason}"
        return Decision(plan.replicas, plan.active, reason, _plan_proposals(plan), plan.nodes)
    if replicas > 0:
        held = min(max(replicas, bounds.min_replicas), bounds.max_replicas)
        return Decision(held, True, f"{replicas} -> {held}: no pod is ready yet; holding", ())
    return Decision(0, False, "at zero: no pod to measure, so the reactive policy sees no "
                    "demand (use policy predictive to wake on a forecast, or "
                    "minReplicaCount >= 1)", ())


def _plan_proposals(plan: Plan) -> tuple[Proposal, ...]:
    ahead = ("no forecast yet: the demand now" if math.isnan(plan.forecast_upper) else
             f"forecast upper {plan.forecast_upper:.3g} req/s one lead time ahead")
    return (Proposal("capacity_now", plan.need_now, math.nan, "SLO capacity at demand now"),
            Proposal("forecast", plan.need_ahead, math.nan, ahead))
