"""What a policy sees at a decision tick and what it answers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from scaler.model.reactive import PodLoad
from scaler.model.specs import PlanSettings, ReactiveTargets
from scaler.sim.pages import PodPage


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
    # What each ready pod's /metrics (and dcgm) page reads; ``pods`` is its gauges.
    pages: Mapping[str, PodPage] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicyDecision:
    replicas: int
    nodes: int | None = None  # None: leave nodes to the cluster-autoscaler emulation
    forecast: float = math.nan  # requests/s, for the report


TARGETS, PLAN = ReactiveTargets(), PlanSettings()  # the trigger metadata's defaults


class Policy(Protocol):
    name: str
    knob: str  # the main setting `scaler bench` sweeps
    knob_value: float

    def decide(self, view: ClusterView) -> PolicyDecision: ...
