"""What a replay produces: per-decision rows and the run's summary.

Plain data, shared by the replay engine (which fills it), the reports (which
write it out) and the bench (which compares runs). Units are in the names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DecisionRow:
    """The state at one decision tick (KEDA's cadence)."""

    time_s: float
    desired_replicas: int
    ready_replicas: int
    desired_nodes: int
    ready_nodes: int
    demand: float  # arrivals observed over the last decision interval, requests/s
    forecast: float = math.nan  # the policy's demand forecast, requests/s (NaN: none)
    slo_misses: float = 0.0  # requests that arrived in this interval and missed the TTFT SLO


@dataclass
class ReplayResult:
    policy: str
    parameters: dict[str, Any]
    requests: float
    slo_attainment: float
    ttft_p50_s: float
    ttft_p95_s: float
    ttft_p99_s: float
    gpu_hours: float
    node_hours: float
    scale_events: int
    decisions: list[DecisionRow] = field(default_factory=list)

    def trace_name(self) -> str:
        """The trace replayed, from ``parameters["trace"]`` ("unnamed trace" without one)."""
        name = self.parameters.get("trace")
        return str(name) if name not in (None, "") else "unnamed trace"

    def summary(self) -> dict[str, Any]:
        """The summary.json document (no per-decision rows)."""
        return {
            "policy": self.policy,
            "parameters": self.parameters,
            "requests": self.requests,
            "slo_attainment": self.slo_attainment,
            "ttft_p50_s": _finite(self.ttft_p50_s),
            "ttft_p95_s": _finite(self.ttft_p95_s),
            "ttft_p99_s": _finite(self.ttft_p99_s),
            "gpu_hours": self.gpu_hours,
            "node_hours": self.node_hours,
            "scale_events": self.scale_events,
        }


def _finite(value: float) -> float | None:
    """JSON has no infinity: a TTFT that never came (no capacity) is written as null."""
    return value if math.isfinite(value) else None
