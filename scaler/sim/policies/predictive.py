"""The forecast-driven planner (``scaler.model.predictive``), as the service runs it.

Each decision is the service's whole decision (``scaler.model.fleet_decision.decide_fleet``)
on the pods' pages as the service would have scraped them (``scraped``): pod health,
capacity learning from saturated pods, demand seen only through ready pods, the plan; and the
forecaster is refitted when it is due (daily: its parameters and its daily shape), as the
service does after a decision (there in a thread, here at once). Its
replica count reaches the Deployment as deployed: as KEDA's metric (``scaler.keda.metrics``)
through the emulated HPA as the shipped ScaledObject configures it (``SCALEDOBJECT_BEHAVIOR``:
no stabilization, tolerance 0; ``behavior`` for another); its node count goes to the cluster
directly (the scaler drives its node pools itself).
"""

from __future__ import annotations

import dataclasses
import math

from scaler.keda import metrics
from scaler.model.capacity import CapacityModel
from scaler.model.fleet_decision import Workload, decide_fleet
from scaler.model.forecast.forecaster import DemandForecaster
from scaler.model.predictive import Plan, PlannerSettings, PredictivePlanner
from scaler.model.specs import ReactiveTargets
from scaler.sim.hpa import SCALEDOBJECT_BEHAVIOR, HorizontalPodAutoscaler, HpaBehavior
from scaler.sim.policies.scraped import STALE_AFTER_S, ScrapedFleet
from scaler.sim.policies.view import PLAN, ClusterView, PolicyDecision


class PredictivePolicy:
    """The forecast-driven planner (``scaler.model.predictive``), as the service runs it."""

    name = "predictive"
    knob = "headroom"

    def __init__(self, *, knob_value: float = PLAN.headroom, capacity: CapacityModel,
                 forecaster: DemandForecaster, settings: PlannerSettings,
                 behavior: HpaBehavior = SCALEDOBJECT_BEHAVIOR) -> None:
        self.knob_value = knob_value
        self.settings = dataclasses.replace(
            settings, plan=dataclasses.replace(settings.plan, headroom=knob_value))
        self.planner = PredictivePlanner(self.settings, capacity, forecaster)
        self.fleet = ScrapedFleet()
        self.workload = Workload(ReactiveTargets(), self.settings.bounds, self.settings.nodes)
        bounds = self.settings.bounds
        self.hpa = HorizontalPodAutoscaler(min_replicas=max(1, bounds.min_replicas),
                                           max_replicas=bounds.max_replicas,
                                           behavior=behavior)

    @property
    def plan(self) -> Plan | None:
        """The last plan made."""
        return self.fleet.plan

    def decide(self, view: ClusterView) -> PolicyDecision:
        self.fleet.read(view)
        # The replay's pod list is complete (every ready replica has a page): never NoData.
        result = decide_fleet(self.fleet, self.planner, self.workload, now_s=view.now_s,
                              stale_after_s=STALE_AFTER_S, pods_listed=True)
        assert result.decision is not None, result.no_data
        if self.planner.forecaster.needs_refit:
            self.planner.forecaster.refit()
        _, value = metrics.metric_value(result.decision.desired_replicas)
        _, target = metrics.target_size()
        replicas = self.hpa.desired(view.now_s, current_replicas=max(view.replicas, 1),
                                    metric_value=value, target_value=target)
        forecast = self.plan.forecast_mean if self.plan is not None else math.nan
        return PolicyDecision(replicas, result.decision.desired_nodes, forecast)
