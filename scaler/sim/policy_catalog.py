"""Each replay policy by name, built as `scaler replay` and `scaler bench` run it.

One place decides how a named policy is set up for a trace (its knob's default and the
values ``scaler bench`` sweeps, the bounds an operator would give it), so the commands and
the benchmarks build the same thing.
"""

from __future__ import annotations

import math

from scaler.model.capacity import CapacityModel
from scaler.model.forecast.forecaster import DemandForecaster
from scaler.model.predictive import FORECAST_STEP_S, PlannerSettings
from scaler.model.profile import ReplicaProfile
from scaler.model.specs import NodeShape, PlanSettings, ReactiveTargets, ReplicaBounds
from scaler.sim.hpa import SCALEDOBJECT_BEHAVIOR, with_tolerance
from scaler.sim.policies import Policy, PredictivePolicy, ReactivePolicy, StaticPolicy
from scaler.sim.policies.reactive_capacity import CapacityPolicy
from scaler.sim.policies.reactive_signal import (
    Signal,
    SignalPolicy,
    WindowedRate,
    concurrency,
    waiting,
)
from scaler.sim.replay import ReplaySettings, make_oracle
from scaler.sim.traces import RateTrace, RequestTrace

ALIASES = {"reactive": "reactive-kv"}  # the name the KV policy had before the others came
REACTIVE = ("reactive-kv", "reactive-queue", "reactive-concurrency", "reactive-rate",
            "reactive-capacity")



def _geometric(first: float, last: float, ratio: float = 1.1) -> tuple[float, ...]:
    """``first`` to ``last`` in steps of ``ratio`` (3 significant digits): fine enough that
    the chosen value is within 10% of the cheapest one meeting the SLO, at log2(len) runs."""
    count = math.ceil(math.log(max(first, last) / min(first, last)) / math.log(ratio))
    step = (last / first) ** (1 / count)
    return tuple(float(f"{first * step ** k:.3g}") for k in range(count + 1))


# The main knob of each policy and the values `scaler bench` tries, cheapest-looking first.
SWEEPS: dict[str, tuple[float, ...]] = {
    "reactive-kv": _geometric(0.9, 0.001, 1.15),
    "reactive-queue": _geometric(100.0, 0.02),
    "reactive-concurrency": _geometric(512.0, 1.0),
    "reactive-rate": _geometric(200.0, 0.2),
    "reactive-capacity": _geometric(0.6, 5.0, 1.05),
    # Headroom in steps of 0.05 (under 4% apart near the usual 1.2-1.5): with the former
    # 1.2, 1.35, 1.5 a choice could cost 12% over the cheapest headroom meeting the SLO, more
    # than issue 15's fleet-speed goal allows between two runs.
    "predictive": tuple(round(0.6 + 0.05 * k, 2) for k in range(49)),
    "oracle": _geometric(0.5, 0.0005, 1.15),
}


def canonical(name: str) -> str:
    """The policy's name, with the old ``reactive`` read as ``reactive-kv``."""
    return ALIASES.get(name, name)


# The policies ReplaySettings.min_replicas/max_replicas do not bound: a static fleet holds its
# knob, the oracle its need. Every other (reactive, predictive) runs within them.
UNBOUNDED = ("static", "oracle")


def max_replicas(settings: ReplaySettings, oracle_peak: int) -> int:
    """The replica cap: ``settings.max_replicas``, else maxReplicaCount as an operator sets
    it, twice the peak the fleet ever needs (the oracle's)."""
    return settings.max_replicas or 2 * oracle_peak


def make_policy(name: str, knob: float | None, trace: RequestTrace | RateTrace,
                settings: ReplaySettings, profile: ReplicaProfile) -> Policy:
    name = canonical(name)
    oracle = make_oracle(trace, settings=settings, profile=profile,
                         miss_share=knob if name == "oracle" else None)
    most = max_replicas(settings, oracle.peak_replicas)
    if name in REACTIVE:
        return _reactive(name, knob, settings, profile, most)
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
                ReplicaBounds(min_replicas=settings.min_replicas, max_replicas=most),
                NodeShape(gpus_per_replica=settings.gpus_per_replica,
                          gpus_per_node=settings.gpus_per_node),
                decision_interval_s=settings.decision_interval_s),
            behavior=with_tolerance(SCALEDOBJECT_BEHAVIOR, settings.hpa_tolerance))
    if name == "static":
        if knob is None:
            knob = float(oracle.peak_replicas)
        return StaticPolicy(knob_value=knob, gpus_per_replica=settings.gpus_per_replica,
                            gpus_per_node=settings.gpus_per_node)
    return oracle


def _reactive(name: str, knob: float | None, settings: ReplaySettings,
              profile: ReplicaProfile, most: int) -> Policy:
    """A reactive policy, each through the emulated HPA with default behaviour."""
    if name == "reactive-kv":
        return ReactivePolicy(knob_value=ReactiveTargets().target_kv_cache_usage
                              if knob is None else knob,
                              min_replicas=settings.min_replicas, max_replicas=most)
    if name == "reactive-capacity":
        return CapacityPolicy(knob_value=1.0 if knob is None else knob,
                              min_replicas=settings.min_replicas, max_replicas=most,
                              capacity=CapacityModel(profile, slo_ttft_s=settings.slo_ttft_s,
                                                     slo_target=settings.slo_target))
    signals: dict[str, tuple[Signal, str, float]] = {
        "reactive-queue": (waiting, "waitingPerReplica", 5.0),
        "reactive-concurrency": (concurrency, "concurrencyPerReplica", 64.0),
        "reactive-rate": (WindowedRate(interval_s=settings.decision_interval_s),
                          "requestsPerSecondPerReplica", 10.0),
    }
    signal, knob_name, default = signals[name]
    return SignalPolicy(name=name, knob=knob_name, knob_value=default if knob is None else knob,
                        signal=signal, min_replicas=settings.min_replicas,
                        max_replicas=most)
