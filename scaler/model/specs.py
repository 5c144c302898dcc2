"""What the model needs to know about one workload, in four small typed specs.

A ScaledObject's trigger metadata is one flat map of keys; the model takes only the part a
rule needs: the reactive rule its targets and bounds, the planner its plan settings, bounds
and node shape. Each key is declared once, here, on its field (key, default, check, doc); the
KEDA metadata parser (``scaler.keda.metadata``) reads them from the trigger and the replay
reads the same defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from scaler.schema import at_least, setting, within

Policy = Literal["predictive", "reactive"]
_PROFILE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


def _profile_name(raw: object) -> str:
    """A profile shipped with the scaler: a plain name, never a path (checked to exist later)."""
    if not isinstance(raw, str) or not _PROFILE_NAME.match(raw.strip()) or ".." in raw:
        raise ValueError(raw)
    return raw.strip()


@dataclass(frozen=True)
class Endpoint:
    """One pod's metrics URL; ``pod`` names it (for GPU metrics and logs)."""

    pod: str
    url: str


@dataclass(frozen=True)
class ReactiveTargets:
    """The HPA-style rule's per-replica targets (``scaler.model.reactive``)."""

    target_queue_per_replica: float = setting(
        5.0, key="targetQueuePerReplica", check=within(0, 1e6, low_open=True),
        accepted="a number > 0, e.g. '5'",
        doc="Waiting requests per replica to aim for (llm-d's saturation point is 5). Reactive "
            "policy; a predictive plan drains queues itself (shown as a proposal).")
    target_kv_cache_usage: float = setting(
        0.8, key="targetKvCacheUsage", check=within(0, 1, low_open=True),
        accepted="a fraction in (0, 1], e.g. '0.8'",
        doc="KV-cache use per replica to aim for, 0-1 (vLLM preempts requests near 1). Reactive "
            "policy; a predictive plan sizes for the KV cache itself (shown as a proposal).")
    target_running_per_replica: float = setting(
        0.0, key="targetRunningPerReplica", check=within(0, 1e6),
        accepted="a number >= 0; 0 turns it off",
        doc="Running (batched) requests per replica to aim for; 0 = not used.")
    target_ttft_s: float = setting(
        0.0, key="targetTtftSeconds", check=within(0, 3600),
        accepted="seconds >= 0, e.g. '2'; 0 turns it off",
        doc="Time-to-first-token SLO: when the p95 TTFT over the rate window exceeds it, scale "
            "up in proportion (never used to scale down); 0 = not used.")
    tolerance: float = setting(
        0.1, check=within(0, 1), accepted="a fraction in [0, 1], e.g. '0.1'",
        doc="No change while every signal is within this fraction of its target (HPA's 10%).")
    activation_threshold: float = setting(
        0.0, key="activationThreshold", check=within(0, 1e9), accepted="a number >= 0, e.g. '0'",
        doc="IsActive is true when waiting + running requests exceed this.")


@dataclass(frozen=True)
class ReplicaBounds:
    min_replicas: int = setting(
        0, key="minReplicas", check=at_least(0), accepted="an integer >= 0",
        doc="Fewest replicas the scaler asks for while active.")
    max_replicas: int = setting(
        100, key="maxReplicas", check=at_least(1), accepted="an integer >= 1",
        doc="Most replicas the scaler asks for (KEDA's maxReplicaCount still applies).")

    def validate(self) -> list[str]:
        if self.min_replicas > self.max_replicas:
            return [f"'minReplicas' ({self.min_replicas}) is greater than "
                    f"'maxReplicas' ({self.max_replicas})"]
        return []


@dataclass(frozen=True)
class NodeShape:
    """How replicas pack onto nodes, and the node plan's bounds."""

    gpus_per_replica: int = setting(
        1, key="gpusPerReplica", check=at_least(1), accepted="an integer >= 1",
        doc="GPUs one replica uses (tensor parallel size), for the node plan.")
    gpus_per_node: int = setting(
        8, key="gpusPerNode", check=at_least(1), accepted="an integer >= 1",
        doc="GPUs one node of the pool holds, for the node plan.")
    spare_nodes: int = setting(
        0, key="spareNodes", check=at_least(0), accepted="an integer >= 0",
        doc="Nodes kept beyond the plan (at most the node pool's max_nodes).")
    min_nodes: int = setting(
        0, key="minNodes", check=at_least(0), accepted="an integer >= 0",
        doc="Fewest nodes the node plan asks for (at most the node pool's max_nodes).")
    max_nodes: int = setting(
        10000, key="maxNodes", check=at_least(1), accepted="an integer >= 1",
        doc="Most nodes the node plan asks for (at most the node pool's max_nodes).")

    def validate(self) -> list[str]:
        problems = []
        if self.gpus_per_replica > self.gpus_per_node:
            problems.append(f"'gpusPerReplica' ({self.gpus_per_replica}) is greater than "
                            f"'gpusPerNode' ({self.gpus_per_node})")
        if self.min_nodes > self.max_nodes:
            problems.append(f"'minNodes' ({self.min_nodes}) is greater than "
                            f"'maxNodes' ({self.max_nodes})")
        return problems


@dataclass(frozen=True)
class PlanSettings:
    """Which policy answers, and what the predictive planner sizes for."""

    policy: Policy = setting(
        "predictive", accepted="one of: predictive, reactive",
        doc="`predictive`: the replicas meeting the TTFT SLO now (queues drained within a "
            "minute) and at the demand forecast one pod start-up ahead, raised by the TTFT and "
            "running signals when set; `reactive`: the HPA-style answer alone.")
    profile: str = setting(
        "llama-8b-h100", parse=_profile_name,
        accepted="a profile name from scaler/profiles (without .yaml)",
        doc="Replica performance profile the capacity model starts from (corrected online).")
    slo_ttft_s: float = setting(
        2.0, key="sloTtftSeconds", check=within(0.01, 3600), accepted="seconds > 0, e.g. '2'",
        doc="TTFT SLO (for 99% of requests) the predictive capacity model sizes for.")
    headroom: float = setting(
        1.0, check=within(0.5, 10), accepted="a factor in [0.5, 10], e.g. '1.1'",
        doc="Multiplier on the forecast's 95% upper bound when sizing ahead.")
    pod_startup_s: float = setting(
        180.0, key="podStartupSeconds", check=within(0, 86400), accepted="seconds >= 0",
        doc="Time from asking for a replica to it serving: how far ahead replicas are planned.")
    node_startup_s: float = setting(
        900.0, key="nodeStartupSeconds", check=within(0, 86400), accepted="seconds >= 0",
        doc="Time from ordering a node to it being ready (bare metal: 10-30 min).")
    scale_down_window_s: float = setting(
        300.0, key="scaleDownWindowSeconds", check=within(0, 86400), accepted="seconds >= 0",
        doc="The predictive plan scales down to the largest target of this window (never while "
            "replicas start); as the HPA's scale-down stabilization window.")
