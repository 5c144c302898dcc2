"""The clairvoyant floor every other policy is measured against."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from scaler.model.nodes import nodes_for
from scaler.sim.policies.view import ClusterView, PolicyDecision


class OraclePolicy:
    """Clairvoyant floor: the least replicas and nodes that meet the SLO, one lead time early.

    ``need_times_s``/``need_replicas`` give, per time bin, the ready replicas of the cheapest
    plan whose expected misses stay within ``miss_share`` of all requests (computed by the
    engine from the future of the trace, ``scaler.sim.replay.oracle_needs``): it spends the
    SLO's budget where it saves the most. ``miss_share`` is its knob: the plan's misses are
    only expected ones, so ``scaler bench`` sweeps it like any knob and keeps the cheapest
    run that really meets the SLO, which makes the oracle the floor of the replay itself.
    At time t the oracle holds max(need) over [t, t + pod start-up + one decision interval]:
    a replica asked for at t serves from t + start-up, and one removed at t stops serving at
    t. Nodes cover the replicas needed up to t + node start-up + pod start-up + interval.
    """

    name = "oracle"
    knob = "miss_share"

    def __init__(self, *, need_times_s: npt.ArrayLike, need_replicas: npt.ArrayLike,
                 pod_lead_s: float, node_lead_s: float, interval_s: float,
                 gpus_per_replica: int, gpus_per_node: int, miss_share: float = math.nan
                 ) -> None:
        self.knob_value = miss_share
        self._times = np.asarray(need_times_s, dtype=float)
        self._need = np.asarray(need_replicas, dtype=np.int64)
        self._pod_lead = pod_lead_s + interval_s
        self._node_lead = node_lead_s + pod_lead_s + interval_s
        self._gpus_per_replica = gpus_per_replica
        self._gpus_per_node = gpus_per_node

    @property
    def peak_replicas(self) -> int:
        return max(int(self._need.max(initial=0)), 1)

    def decide(self, view: ClusterView) -> PolicyDecision:
        replicas = self._max_need(view.now_s, view.now_s + self._pod_lead)
        ahead = self._max_need(view.now_s, view.now_s + self._node_lead)
        return PolicyDecision(replicas, nodes_for(ahead, gpus_per_replica=self._gpus_per_replica,
                                                  gpus_per_node=self._gpus_per_node))

    def _max_need(self, start_s: float, end_s: float) -> int:
        first = max(int(np.searchsorted(self._times, start_s, side="right")) - 1, 0)
        last = int(np.searchsorted(self._times, end_s, side="right"))
        window = self._need[first:max(last, first + 1)]
        return int(window.max()) if window.size else 0
