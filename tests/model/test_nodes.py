"""Node arithmetic and the node-pool rules (pure): whole replicas per node, the nodes a pool
asks for, and when a pool may change its node count."""

from __future__ import annotations

import pytest

from scaler.model.nodes import (
    node_change,
    nodes_filled,
    nodes_for,
    nodes_joining,
    placeholder_nodes,
    pool_nodes,
    replicas_per_node,
    warm_up,
)


@pytest.mark.parametrize(("gpus_per_replica", "gpus_per_node", "per_node"), [
    (1, 8, 8),
    (3, 8, 2),  # the 2 GPUs left hold no third replica
    (8, 8, 1),
    (16, 8, 1),  # never less than one
])
def test_a_node_holds_whole_replicas(gpus_per_replica: int, gpus_per_node: int,
                                     per_node: int) -> None:
    assert replicas_per_node(gpus_per_replica, gpus_per_node) == per_node


@pytest.mark.parametrize(("replicas", "spare", "nodes"), [
    (0, 2, 0),  # no replica, no node, no spare
    (1, 0, 1),
    (4, 0, 2),
    (5, 0, 3),  # 15 GPUs would fit 2 nodes, 5 whole replicas do not
    (5, 1, 4),
])
def test_nodes_for_counts_whole_replicas_plus_spares(replicas: int, spare: int,
                                                      nodes: int) -> None:
    assert nodes_for(replicas, gpus_per_replica=3, gpus_per_node=8, spare_nodes=spare) == nodes


def test_a_pool_asks_within_its_bounds_and_placeholders_only_beyond_what_runs() -> None:
    assert pool_nodes(3, min_nodes=5, max_nodes=None) == 5
    assert pool_nodes(9, min_nodes=0, max_nodes=6) == 6
    assert pool_nodes(4, min_nodes=2, max_nodes=6) == 4
    # 3 replicas of 3 GPUs fill 1.5 nodes: 2 nodes are in use, placeholders stand for the rest.
    in_use = nodes_filled(3, gpus_per_replica=3, gpus_per_node=8)
    assert in_use == 1.5
    assert placeholder_nodes(5, in_use) == 3
    assert placeholder_nodes(1, in_use) == 0
    # 15 one-replica workloads at 5 replicas per node sum to 3.0000000000000004 nodes: float
    # noise, not a fourth node in use.
    noisy = sum(nodes_filled(1, gpus_per_replica=1, gpus_per_node=5) for _ in range(15))
    assert noisy > 3 and placeholder_nodes(4, noisy) == 1


def test_nodes_joining_are_those_asked_for_and_not_ready() -> None:
    assert nodes_joining(5, 3) == 2
    assert nodes_joining(3, 5) == 0
    assert nodes_joining(5, None) == 0  # the object does not say


NODE_CHANGE_CASES = [
    # current, desired, pending, joining, last change, now, applied, why
    (4, 4, 0, 0, None, 0.0, 4, "at 4 nodes"),
    (4, 6, 0, 0, None, 0.0, 6, "scale up 4 -> 6"),
    (4, 6, 0, 2, 0.0, 600.0, 6, "scale up 4 -> 6"),
    (4, 6, 0, 0, 500.0, 600.0, 4, "hold 4: scale-up cooldown, 100s since the last change < 120s"),
    (4, 2, 3, 0, None, 0.0, 4, "hold 4: 3 pods pending, never shrink"),
    (4, 2, 0, 1, None, 0.0, 4, "hold 4: 1 nodes joining, never shrink"),
    (4, 2, 0, 0, 400.0, 600.0, 4, "hold 4: scale-down cooldown, 200s since the last change < 900s"),
    (4, 2, 0, 0, 0.0, 900.0, 2, "scale down 4 -> 2"),
    (4, 2, 0, 0, None, 0.0, 2, "scale down 4 -> 2"),
]


@pytest.mark.parametrize(("current", "desired", "pending", "joining", "last", "now", "applied",
                          "why"), NODE_CHANGE_CASES)
def test_node_change(current: int, desired: int, pending: int, joining: int, last: float | None,
                     now: float, applied: int, why: str) -> None:
    assert node_change(current, desired, pending_pods=pending, joining_nodes=joining,
                       last_change_s=last, now_s=now, cooldown_up_s=120,
                       cooldown_down_s=900) == (applied, why)


@pytest.mark.parametrize(("since", "missing", "held"), [
    (0.0, 0, True),  # just started or took the Lease
    (599.0, 0, True),  # one cooldown_down_s at least, everyone back or not
    (600.0, 0, False),  # everyone that counted before is back: over after one cooldown
    (600.0, 1, True),  # one is not back yet: longer
    (1199.0, 3, True),
    (1200.0, 3, False),  # but at most twice cooldown_down_s (it may be gone for good)
])
def test_warm_up_lasts_a_cooldown_and_until_every_workload_is_back_at_most_twice(
        since: float, missing: int, held: bool) -> None:
    reason = warm_up(since_s=since, cooldown_down_s=600, missing=missing)
    assert (reason is not None) == held, reason


def test_warm_up_says_why() -> None:
    assert warm_up(since_s=30, cooldown_down_s=600, missing=0) == (
        "warming up after a start or a new Lease holder, 30s of cooldown_down_s=600s")
    assert warm_up(since_s=700, cooldown_down_s=600, missing=2) == (
        "warming up: 2 workload(s) that counted toward the pool before have not come back"
        " (700s, at most 1200s)")
    assert warm_up(since_s=0, cooldown_down_s=0, missing=5) is None  # no cooldown, no warm-up


def test_no_shrink_while_warming_up_but_growth_goes_on() -> None:
    why = warm_up(since_s=10, cooldown_down_s=600, missing=1)
    common = {"pending_pods": 0, "joining_nodes": 0, "last_change_s": None, "now_s": 10.0,
              "cooldown_up_s": 0, "cooldown_down_s": 600, "warming_up": why}
    assert node_change(10, 2, **common) == (10, f"hold 10: {why}")
    assert node_change(10, 12, **common) == (12, "scale up 10 -> 12")
