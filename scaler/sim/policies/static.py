"""A fixed fleet sized once, what many GPU teams run."""

from __future__ import annotations

from scaler.model.nodes import nodes_for
from scaler.sim.policies.view import ClusterView, PolicyDecision


class StaticPolicy:
    """A fixed fleet sized once (what many GPU teams run): ``knob_value`` replicas, on the nodes
    that hold them as whole replicas (``nodes_for``), as the other policies count nodes."""

    name = "static"
    knob = "replicas"

    def __init__(self, *, knob_value: float, gpus_per_replica: int, gpus_per_node: int) -> None:
        self.knob_value = knob_value
        self.replicas = int(knob_value)
        self.nodes = nodes_for(self.replicas, gpus_per_replica=gpus_per_replica,
                               gpus_per_node=gpus_per_node)

    def decide(self, view: ClusterView) -> PolicyDecision:
        return PolicyDecision(self.replicas, self.nodes)
