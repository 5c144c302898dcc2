"""Nodes as cluster-autoscaler manages them, for policies that give no node count."""

from __future__ import annotations

from scaler.sim.cluster import Cluster


class ClusterAutoscaler:
    """Nodes as cluster-autoscaler manages them: add for pending pods, drop empty ones.

    Pending replicas that fit on no ready or joining node make it order nodes at once
    (which are ready only after the node start-up). A ready node empty for
    ``unneeded_s`` (default 10 min, cluster-autoscaler's scale-down-unneeded-time) goes.
    """

    def __init__(self, *, unneeded_s: float = 600.0) -> None:
        self.unneeded_s = unneeded_s

    def nodes(self, cluster: Cluster, now_s: float) -> int:
        counts = cluster.counts(now_s)
        needed = cluster.nodes_for(counts.replicas)
        if needed > counts.nodes:
            return needed
        empty = cluster.empty_nodes_since(now_s)
        idle = sum(1 for since in empty.values() if now_s - since >= self.unneeded_s)
        return max(counts.nodes - idle, needed)
