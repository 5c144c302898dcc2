"""Scaling policies the replay compares, behind one interface (``Policy``).

Every policy sees what a real scaler could see at a decision tick (``ClusterView``:
the ready pods' metrics as their /metrics pages would show them, the replica and
node counts, the arrival rate observed over the last interval) and answers how
many replicas, and optionally nodes, it wants. Only ``OraclePolicy`` reads the
future, by construction: it is the floor the others are measured against.
When a policy gives no node count, ``ClusterAutoscaler`` decides nodes as
cluster-autoscaler does.
"""

from scaler.sim.policies.cluster_autoscaler import ClusterAutoscaler
from scaler.sim.policies.oracle import OraclePolicy
from scaler.sim.policies.predictive import PredictivePolicy
from scaler.sim.policies.reactive import ReactivePolicy
from scaler.sim.policies.static import StaticPolicy
from scaler.sim.policies.view import ClusterView, Policy, PolicyDecision

__all__ = ["ClusterAutoscaler", "ClusterView", "OraclePolicy", "Policy", "PolicyDecision",
           "PredictivePolicy", "ReactivePolicy", "StaticPolicy"]
