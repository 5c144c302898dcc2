"""Lead times and cost: no replica serves before its start-up, no node before provisioning."""

from __future__ import annotations

import pytest

from scaler.sim.cluster import Cluster


def cluster(**kw: int) -> Cluster:
    return Cluster(pod_startup_s=180, node_startup_s=900, gpus_per_replica=kw.get("gpr", 1),
                   gpus_per_node=kw.get("gpn", 8))


def test_a_replica_on_a_free_node_serves_exactly_one_start_up_later():
    c = cluster()
    c.start_warm(replicas=1, nodes=1)
    c.scale_replicas(2, now_s=100)
    assert c.counts(100).starting_replicas == 1
    assert c.counts(279.9).ready_replicas == 1
    assert c.counts(280).ready_replicas == 2


def test_a_replica_without_room_waits_for_a_node_then_starts():
    c = cluster(gpn=2)
    c.start_warm(replicas=2, nodes=1)
    c.scale_replicas(3, now_s=0)
    assert c.counts(0).pending_replicas == 1
    c.scale_nodes(2, now_s=0)
    assert c.counts(899).ready_nodes == 1 and c.counts(899).pending_replicas == 1
    assert c.counts(900).starting_replicas == 1
    assert c.counts(1079).ready_replicas == 2
    assert c.counts(1080).ready_replicas == 3


def test_removal_takes_pending_then_starting_then_newest_ready():
    c = cluster(gpn=3)
    c.start_warm(replicas=2, nodes=1)
    c.scale_replicas(3, now_s=10)  # starting on the free slot
    c.scale_replicas(4, now_s=20)  # pending: no room
    assert c.counts(20).pending_replicas == 1
    c.scale_replicas(3, now_s=30)
    assert c.counts(30).pending_replicas == 0 and c.counts(30).starting_replicas == 1
    c.scale_replicas(2, now_s=40)
    assert c.counts(40).starting_replicas == 0 and c.counts(40).ready_replicas == 2


def test_only_empty_nodes_go_and_joining_ones_first():
    c = cluster(gpn=1)
    c.start_warm(replicas=1, nodes=2)  # one busy, one empty ready node
    c.scale_nodes(3, now_s=0)  # a third, joining
    c.scale_nodes(2, now_s=10)
    assert c.counts(10).nodes == 2 and c.counts(10).ready_nodes == 2
    c.scale_nodes(0, now_s=20)
    assert c.counts(20).nodes == 1  # the busy node stays


def test_cost_counts_placed_replicas_and_every_node():
    c = cluster(gpr=2, gpn=4)
    c.start_warm(replicas=1, nodes=1)
    c.scale_replicas(3, now_s=0)  # one more fits (starting), one pending
    c.advance(0, 3600)
    assert c.gpu_seconds == pytest.approx(2 * 2 * 3600)  # the pending one holds no GPU
    assert c.node_seconds == pytest.approx(3600)


def test_bad_gpu_shape_is_refused():
    with pytest.raises(ValueError, match="gpus_per_replica"):
        cluster(gpr=16, gpn=8)
