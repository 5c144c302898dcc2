"""Scaling policies the replay compares, behind one interface.

Every policy sees what a real scaler could see at a decision tick (``ClusterView``:
the ready pods' metrics as their /metrics pages would show them, the replica and
node counts, the arrival rate observed over the last interval) and answers how
many replicas, and optionally nodes, it wants. Only ``OraclePolicy`` reads the
future, by construction: it is the floor the others are measured against.

``ReactivePolicy`` is today's common setup and runs the service's own decision
code (``scaler.model.reactive.decide``) through the same numbers KEDA gets
(``scaler.keda.metrics``), then the emulated HPA with its default behaviour.
When a policy gives no node count, ``ClusterAutoscaler`` decides nodes as
cluster-autoscaler does: nodes for pending pods, empty nodes removed after 10 min.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from scaler.keda import metrics
from scaler.model.capacity import CapacityModel
from scaler.model.decision import decide_workload
from scaler.model.forecast.forecaster import DemandForecaster
from scaler.model.nodes import nodes_for
from scaler.model.predictive import FleetState, Plan, PlannerSettings, PredictivePlanner
from scaler.model.reactive import FleetObservation, NoData, PodLoad, decide
from scaler.model.specs import PlanSettings, ReactiveTargets, ReplicaBounds
from scaler.sim.cluster import Cluster
from scaler.sim.hpa import HorizontalPodAutoscaler


@dataclass(frozen=True)
class ClusterView:
    now_s: float
    pods: Mapping[str, PodLoad]  # ready replicas' metrics
    replicas: int  # the Deployment's replica count (spec)
    ready_replicas: int
    starting_replicas: int
    pending_replicas: int
    nodes: int
    ready_nodes: int
    observed_rate: float  # arrivals over the last decision interval, requests/s
    mean_prompt_tokens: float
    mean_output_tokens: float


@dataclass(frozen=True)
class PolicyDecision:
    replicas: int
    nodes: int | None = None  # None: leave nodes to the cluster-autoscaler emulation
    forecast: float = math.nan  # requests/s, for the report


_TARGETS, _PLAN = ReactiveTargets(), PlanSettings()  # the trigger metadata's defaults


class Policy(Protocol):
    name: str
    knob: str  # the main setting `scaler bench` sweeps
    knob_value: float

    def decide(self, view: ClusterView) -> PolicyDecision: ...


class ReactivePolicy:
    """KEDA + HPA on vLLM queue and KV-cache per replica, as the service decides today."""

    name = "reactive"
    knob = "targetKvCacheUsage"

    def __init__(self, *, knob_value: float = _TARGETS.target_kv_cache_usage,
                 queue_per_replica: float = _TARGETS.target_queue_per_replica,
                 min_replicas: int = 1, max_replicas: int = 1000,
                 hpa: HorizontalPodAutoscaler | None = None) -> None:
        self.knob_value = knob_value
        self.targets = ReactiveTargets(target_kv_cache_usage=knob_value,
                                       target_queue_per_replica=queue_per_replica)
        self.bounds = ReplicaBounds(min_replicas=min_replicas, max_replicas=max_replicas)
        self.hpa = hpa or HorizontalPodAutoscaler(min_replicas=min_replicas,
                                                  max_replicas=max_replicas)

    def decide(self, view: ClusterView) -> PolicyDecision:
        if not view.pods:
            return PolicyDecision(view.replicas)  # no metrics: the HPA leaves the count
        try:
            decision = decide(FleetObservation(dict(view.pods)), self.targets, self.bounds)
        except NoData:
            return PolicyDecision(view.replicas)
        _, value = metrics.metric_value(decision.desired_replicas)
        _, target = metrics.target_size()
        replicas = self.hpa.desired(view.now_s, current_replicas=max(view.replicas, 1),
                                    metric_value=value, target_value=target)
        return PolicyDecision(replicas)


class PredictivePolicy:
    """The forecast-driven planner (``scaler.model.predictive``), as the service runs it."""

    name = "predictive"
    knob = "headroom"

    def __init__(self, *, knob_value: float = _PLAN.headroom, capacity: CapacityModel,
                 forecaster: DemandForecaster, settings: PlannerSettings) -> None:
        self.knob_value = knob_value
        self.settings = dataclasses.replace(
            settings, plan=dataclasses.replace(settings.plan, headroom=knob_value))
        self.planner = PredictivePlanner(self.settings, capacity, forecaster)
        self.plan: Plan | None = None

    def decide(self, view: ClusterView) -> PolicyDecision:
        starting = view.starting_replicas + view.pending_replicas
        state = FleetState(
            now_s=view.now_s, replicas=view.replicas, starting_replicas=starting,
            nodes=view.nodes, ready_nodes=view.ready_nodes,
            pending_replicas=view.pending_replicas, observed_rate=_seen_rate(view, starting),
            backlog=sum(p.waiting for p in view.pods.values()),
            running=sum(p.running for p in view.pods.values()),
            mean_prompt_tokens=view.mean_prompt_tokens,
            mean_output_tokens=view.mean_output_tokens)

        def make_plan() -> Plan:
            self.plan = self.planner.plan(state)
            return self.plan

        # Every ready replica of the replay has data, and its list is complete: no NoData.
        decision = decide_workload(FleetObservation(dict(view.pods)), make_plan,
                                   targets=ReactiveTargets(), bounds=self.settings.bounds,
                                   nodes=self.settings.nodes, replicas=view.replicas,
                                   pods_listed=True)
        forecast = self.plan.forecast_mean if self.plan is not None else math.nan
        return PolicyDecision(decision.desired_replicas, decision.desired_nodes, forecast)


def _seen_rate(view: ClusterView, starting: int) -> float:
    """Arrivals as the service sees them: only through ready pods (unseen while replicas
    start, none at zero), so the replay's planner knows no more than the service's."""
    if view.pods:
        return view.observed_rate
    return 0.0 if view.replicas == 0 and starting == 0 else math.nan


class StaticPolicy:
    """A fixed fleet sized once (what many GPU teams run): ``knob_value`` replicas, on the nodes
    that hold them as whole replicas (``nodes_for``), as the other policies count nodes."""

    name = "static"
    knob = "replicas"

    def __init__(self, *, knob_value: float, gpus_per_replica: int, gpus_per_node: int) -> None:
        self.knob_value = knob_value
        self.replicas = int(knob_value)
        self.nodes = nodes_for(self.replicas, gpus_per_replica=gpus_per_replica,
                               gpus_per_node=gpus_per_node)

    def decide(self, view: ClusterView) -> PolicyDecision:
        return PolicyDecision(self.replicas, self.nodes)


class OraclePolicy:
    """Clairvoyant floor: the least replicas and nodes that meet the SLO, one lead time early.

    ``need_times_s``/``need_replicas`` give, per time bin, the fewest ready replicas that keep
    the bin's requests within the SLO (computed by the engine from the future of the trace).
    At time t the oracle holds max(need) over [t, t + pod start-up + one decision interval]:
    a replica asked for at t serves from t + start-up, and one removed at t stops serving at
    t. Nodes cover the replicas needed up to t + node start-up + pod start-up + interval.
    """

    name = "oracle"
    knob = "none"
    knob_value = math.nan

    def __init__(self, *, need_times_s: npt.ArrayLike, need_replicas: npt.ArrayLike,
                 pod_lead_s: float, node_lead_s: float, interval_s: float,
                 gpus_per_replica: int, gpus_per_node: int) -> None:
        self._times = np.asarray(need_times_s, dtype=float)
        self._need = np.asarray(need_replicas, dtype=np.int64)
        self._pod_lead = pod_lead_s + interval_s
        self._node_lead = node_lead_s + pod_lead_s + interval_s
        self._gpus_per_replica = gpus_per_replica
        self._gpus_per_node = gpus_per_node

    @property
    def peak_replicas(self) -> int:
        return max(int(self._need.max(initial=0)), 1)

    def decide(self, view: ClusterView) -> PolicyDecision:
        replicas = self._max_need(view.now_s, view.now_s + self._pod_lead)
        ahead = self._max_need(view.now_s, view.now_s + self._node_lead)
        return PolicyDecision(replicas, nodes_for(ahead, gpus_per_replica=self._gpus_per_replica,
                                                  gpus_per_node=self._gpus_per_node))

    def _max_need(self, start_s: float, end_s: float) -> int:
        first = max(int(np.searchsorted(self._times, start_s, side="right")) - 1, 0)
        last = int(np.searchsorted(self._times, end_s, side="right"))
        window = self._need[first:max(last, first + 1)]
        return int(window.max()) if window.size else 0


class ClusterAutoscaler:
    """Nodes as cluster-autoscaler manages them: add for pending pods, drop empty ones.

    Pending replicas that fit on no ready or joining node make it order nodes at once
    (which are ready only after the node start-up). A ready node empty for
    ``unneeded_s`` (default 10 min, cluster-autoscaler's scale-down-unneeded-time) goes.
    """

    def __init__(self, *, unneeded_s: float = 600.0) -> None:
        self.unneeded_s = unneeded_s

    def nodes(self, cluster: Cluster, now_s: float) -> int:
        counts = cluster.counts(now_s)
        needed = cluster.nodes_for(counts.replicas)
        if needed > counts.nodes:
            return needed
        empty = cluster.empty_nodes_since(now_s)
        idle = sum(1 for since in empty.values() if now_s - since >= self.unneeded_s)
        return max(counts.nodes - idle, needed)
