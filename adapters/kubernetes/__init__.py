"""Kubernetes adapters: find a workload's pods through the API server (see ``discovery``)."""

from __future__ import annotations

from adapters.kubernetes.discovery import (
    DiscoveryError,
    PodCounts,
    PodDiscovery,
    PodInfo,
    WorkloadTarget,
    pod_info,
    selector_from_spec,
)

__all__ = [
    "DiscoveryError",
    "PodCounts",
    "PodDiscovery",
    "PodInfo",
    "WorkloadTarget",
    "pod_info",
    "selector_from_spec",
]
