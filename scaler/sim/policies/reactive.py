"""KEDA + HPA on vLLM queue and KV-cache per replica: the scaler's own reactive policy.

``reactive-kv`` in the replay (``reactive`` stays an alias): the knob is the KV-cache target,
the queue target stays at the trigger metadata's default.

It runs the service's own decision code (``scaler.model.reactive.decide``) through the same
numbers KEDA gets (``scaler.keda.metrics``), then the emulated HPA with its default behaviour.
"""

from __future__ import annotations

from scaler.keda import metrics
from scaler.model.reactive import FleetObservation, NoData, decide
from scaler.model.specs import ReactiveTargets, ReplicaBounds
from scaler.sim.hpa import HorizontalPodAutoscaler
from scaler.sim.policies.view import TARGETS, ClusterView, PolicyDecision


class ReactivePolicy:
    """KEDA + HPA on vLLM queue and KV-cache per replica, as the service decides today."""

    name = "reactive-kv"
    knob = "targetKvCacheUsage"

    def __init__(self, *, knob_value: float = TARGETS.target_kv_cache_usage,
                 queue_per_replica: float = TARGETS.target_queue_per_replica,
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
