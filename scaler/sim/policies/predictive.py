"""The forecast-driven planner (``scaler.model.predictive``), as the service runs it."""

from __future__ import annotations

import dataclasses
import math

from scaler.model.capacity import CapacityModel
from scaler.model.decision import decide_workload
from scaler.model.forecast.forecaster import DemandForecaster
from scaler.model.predictive import FleetState, Plan, PlannerSettings, PredictivePlanner
from scaler.model.reactive import FleetObservation
from scaler.model.specs import ReactiveTargets
from scaler.sim.policies.view import PLAN, ClusterView, PolicyDecision


class PredictivePolicy:
    """The forecast-driven planner (``scaler.model.predictive``), as the service runs it."""

    name = "predictive"
    knob = "headroom"

    def __init__(self, *, knob_value: float = PLAN.headroom, capacity: CapacityModel,
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
