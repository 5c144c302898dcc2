"""Each replay policy by name, built as `scaler replay` and `scaler bench` run it.

One place decides how a named policy is set up for a trace (its knob's default and the
values ``scaler bench`` sweeps, the bounds an operator would give it), so the commands and
the benchmarks build the same thing.
"""

from __future__ import annotations

from scaler.model.capacity import CapacityModel
from scaler.model.forecast.forecaster import DemandForecaster
from scaler.model.predictive import FORECAST_STEP_S, PlannerSettings
from scaler.model.profile import ReplicaProfile
from scaler.model.specs import NodeShape, PlanSettings, ReactiveTargets, ReplicaBounds
from scaler.sim.policies import Policy, PredictivePolicy, ReactivePolicy, StaticPolicy
from scaler.sim.replay import ReplaySettings, make_oracle
from scaler.sim.traces import RateTrace, RequestTrace

# The main knob of each policy and the values `scaler bench` tries, cheapest-looking first.
SWEEPS: dict[str, tuple[float, ...]] = {
    "reactive": (0.8, 0.6, 0.4, 0.3, 0.2, 0.15, 0.1, 0.08, 0.06, 0.05, 0.04, 0.03, 0.02,
                 0.015, 0.01, 0.007, 0.005, 0.003, 0.002),
    "predictive": (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.35, 1.5, 1.75, 2.0, 2.5, 3.0),
}


# The policies ReplaySettings.min_replicas/max_replicas do not bound: a static fleet holds its
# knob, the oracle its need. Every other (reactive, predictive) runs within them.
UNBOUNDED = ("static", "oracle")


def max_replicas(settings: ReplaySettings, oracle_peak: int) -> int:
    """The replica cap: ``settings.max_replicas``, else maxReplicaCount as an operator sets
    it, twice the peak the fleet ever needs (the oracle's)."""
    return settings.max_replicas or 2 * oracle_peak


def make_policy(name: str, knob: float | None, trace: RequestTrace | RateTrace,
                settings: ReplaySettings, profile: ReplicaProfile) -> Policy:
    oracle = make_oracle(trace, settings=settings, profile=profile)
    if name == "reactive":
        return ReactivePolicy(knob_value=ReactiveTargets().target_kv_cache_usage
                              if knob is None else knob, min_replicas=settings.min_replicas,
                              max_replicas=max_replicas(settings, oracle.peak_replicas))
    if name == "predictive":
        return PredictivePolicy(
            knob_value=PlanSettings().headroom if knob is None else knob,
            capacity=CapacityModel(profile, slo_ttft_s=settings.slo_ttft_s,
                                   slo_target=settings.slo_target),
            forecaster=DemandForecaster(step_s=FORECAST_STEP_S),
            settings=PlannerSettings(
                PlanSettings(pod_startup_s=settings.pod_startup_s,
                             node_startup_s=settings.node_startup_s,
                             scale_down_window_s=settings.scale_down_window_s),
                ReplicaBounds(min_replicas=settings.min_replicas,
                              max_replicas=max_replicas(settings, oracle.peak_replicas)),
                NodeShape(gpus_per_replica=settings.gpus_per_replica,
                          gpus_per_node=settings.gpus_per_node),
                decision_interval_s=settings.decision_interval_s))
    if name == "static":
        if knob is None:
            knob = float(oracle.peak_replicas)
        return StaticPolicy(knob_value=knob, gpus_per_replica=settings.gpus_per_replica,
                            gpus_per_node=settings.gpus_per_node)
    return oracle
