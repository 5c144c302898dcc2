"""The replay's policies on their own, outside a replay."""

from __future__ import annotations

import pytest

from scaler.sim.policies import ClusterView, StaticPolicy


def view(now_s: float = 0.0) -> ClusterView:
    return ClusterView(now_s=now_s, pods={}, replicas=0, ready_replicas=0, starting_replicas=0,
                       pending_replicas=0, nodes=0, ready_nodes=0, observed_rate=0.0,
                       mean_prompt_tokens=0.0, mean_output_tokens=0.0)


@pytest.mark.parametrize(("replicas", "gpus_per_replica", "nodes"), [
    (5, 3, 3),  # two whole 3-GPU replicas per 8-GPU node; 15 GPUs / 8 would say 2
    (6, 1, 1),
    (9, 1, 2),
    (3, 8, 3),
    (0, 3, 0),
])
def test_a_static_fleet_gets_the_nodes_that_hold_its_whole_replicas(
        replicas: int, gpus_per_replica: int, nodes: int) -> None:
    static = StaticPolicy(knob_value=replicas, gpus_per_replica=gpus_per_replica,
                          gpus_per_node=8)
    decision = static.decide(view())
    assert (decision.replicas, decision.nodes) == (replicas, nodes)
