"""The scaler's own SLO capacity model at the observed demand: no forecast, no plan ahead.

What ``reactive-capacity`` asks for is ``CapacityModel.replicas_for`` at the arrival rate
(times ``headroom``) and lengths seen over the last decision interval, the same model and the
same observed demand the predictive planner starts from, then KEDA's numbers and the emulated
HPA. What predictive gains over it is what forecasting and planning ahead are worth.
"""

from __future__ import annotations

from scaler.keda import metrics
from scaler.model.capacity import CapacityModel
from scaler.sim.hpa import HorizontalPodAutoscaler
from scaler.sim.policies.view import ClusterView, PolicyDecision


class CapacityPolicy:
    """Replicas for ``headroom`` x the observed demand, by the SLO capacity model, via the HPA."""

    name = "reactive-capacity"
    knob = "headroom"

    def __init__(self, *, knob_value: float, capacity: CapacityModel, min_replicas: int = 1,
                 max_replicas: int = 1000, hpa: HorizontalPodAutoscaler | None = None) -> None:
        if not knob_value > 0:
            raise ValueError(f"{self.name}: headroom must be > 0, got {knob_value!r}")
        self.knob_value = knob_value
        self.capacity = capacity
        self.min_replicas, self.max_replicas = min_replicas, max_replicas
        self.hpa = hpa or HorizontalPodAutoscaler(min_replicas=min_replicas,
                                                  max_replicas=max_replicas)

    def decide(self, view: ClusterView) -> PolicyDecision:
        if not view.pods:
            return PolicyDecision(view.replicas)  # demand is seen through ready pods only
        need = self.capacity.replicas_for(view.observed_rate * self.knob_value,
                                          view.mean_prompt_tokens, view.mean_output_tokens)
        desired = min(max(need, self.min_replicas), self.max_replicas)
        _, value = metrics.metric_value(desired)
        _, target = metrics.target_size()
        replicas = self.hpa.desired(view.now_s, current_replicas=max(view.replicas, 1),
                                    metric_value=value, target_value=target)
        return PolicyDecision(replicas)
