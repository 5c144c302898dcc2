"""Node arithmetic and the node-pool rules: how many nodes replicas fill, and what a pool does.

Pure (no I/O, no clock, no asyncio). One home so that the planner, the decision, the node-pool
controller and the replay's policies and cluster count nodes the same way: a replica is never
split across nodes, so a node holds ``gpus_per_node // gpus_per_replica`` whole replicas (5
replicas of 3 GPUs on 8-GPU nodes need 3 nodes, not the 2 that 15 GPUs / 8 would suggest).

``node_change`` is the guard in front of any node actuator: never shrink while pods are pending
or nodes are still joining, nor during the warm-up after a start or a new Lease holder
(``warm_up``), and respect separate scale-up and scale-down cooldowns. The other rules turn the
sum of a pool's node plans into what its actuator is asked for.
"""

from __future__ import annotations

import math

__all__ = [
    "node_change",
    "nodes_filled",
    "nodes_for",
    "nodes_joining",
    "placeholder_nodes",
    "pool_nodes",
    "replicas_per_node",
    "warm_up",
]


def replicas_per_node(gpus_per_replica: int, gpus_per_node: int) -> int:
    """Whole replicas one node holds (a replica is not split across nodes; at least one)."""
    return max(1, gpus_per_node // gpus_per_replica)


def nodes_for(replicas: int, *, gpus_per_replica: int, gpus_per_node: int,
              spare_nodes: int = 0) -> int:
    """Nodes holding ``replicas`` replicas, plus ``spare_nodes`` when any is needed."""
    if replicas <= 0:
        return 0
    return math.ceil(replicas / replicas_per_node(gpus_per_replica, gpus_per_node)) + spare_nodes


def nodes_filled(replicas: int, *, gpus_per_replica: int, gpus_per_node: int) -> float:
    """The nodes ``replicas`` running replicas fill, as a fraction (whole replicas per node):
    a pool sums this over its workloads before rounding, so two half-full workloads fill one."""
    return replicas / replicas_per_node(gpus_per_replica, gpus_per_node)


def pool_nodes(planned: int, *, min_nodes: int, max_nodes: int | None) -> int:
    """The nodes a pool asks for: its workloads' summed plan within the pool's own bounds."""
    wanted = max(planned, min_nodes)
    if max_nodes is not None:
        wanted = min(wanted, max_nodes)
    return wanted


def placeholder_nodes(wanted: int, nodes_in_use: float) -> int:
    """Placeholder pods for ``wanted`` nodes: only the nodes beyond those the running replicas
    already fill (a partly filled node is in use; the epsilon keeps float noise from adding
    one), since real pods hold their nodes by themselves."""
    return max(0, wanted - math.ceil(nodes_in_use - 1e-9))


def nodes_joining(requested: int, ready: int | None) -> int:
    """Nodes asked for but not ready yet; none when the object does not say how many are."""
    return max(0, requested - ready) if ready is not None else 0


def warm_up(*, since_s: float, cooldown_down_s: float, missing: int) -> str | None:
    """Why a pool may not shrink yet after a start or a new Lease holder, or None once it may.

    A new process, or a replica that just took the Lease, knows only the workloads KEDA has
    asked *it* about: the nodes under a workload that has not been asked about yet look unused.
    So no scale-down for ``cooldown_down_s`` after ``since_s`` counts from, and beyond that while
    ``missing`` workloads that counted toward the pool before (as the Lease remembers them) have
    not come back; but for at most twice ``cooldown_down_s``, since a workload may be gone for
    good (its ScaledObject deleted).
    """
    if since_s < cooldown_down_s:
        return (f"warming up after a start or a new Lease holder, {since_s:.0f}s of"
                f" cooldown_down_s={cooldown_down_s:.0f}s")
    if missing > 0 and since_s < 2 * cooldown_down_s:
        return (f"warming up: {missing} workload(s) that counted toward the pool before have"
                f" not come back ({since_s:.0f}s, at most {2 * cooldown_down_s:.0f}s)")
    return None


def node_change(current: int, desired: int, *, pending_pods: int, joining_nodes: int,
                last_change_s: float | None, now_s: float, cooldown_up_s: float,
                cooldown_down_s: float, warming_up: str | None = None) -> tuple[int, str]:
    """The node count to apply now and why: the cases, in the order they are checked.

    - no change wanted: keep;
    - up: wait out ``cooldown_up_s`` since the last change, then grow;
    - down: never while pods are pending (they need the nodes) or nodes are joining (the count
      is about to change under us), nor while ``warming_up`` says why (``warm_up``); wait out
      ``cooldown_down_s``; then shrink. No last change known: no cooldown to wait out (the
      warm-up covers a new process or leader).
    """
    if desired == current:
        return current, f"at {current} nodes"
    since = None if last_change_s is None else now_s - last_change_s
    if desired > current:
        if since is not None and since < cooldown_up_s:
            return current, (f"hold {current}: scale-up cooldown, {since:.0f}s since the last"
                             f" change < {cooldown_up_s:.0f}s")
        return desired, f"scale up {current} -> {desired}"
    if pending_pods > 0:
        return current, f"hold {current}: {pending_pods} pods pending, never shrink"
    if joining_nodes > 0:
        return current, f"hold {current}: {joining_nodes} nodes joining, never shrink"
    if warming_up is not None:
        return current, f"hold {current}: {warming_up}"
    if since is not None and since < cooldown_down_s:
        return current, (f"hold {current}: scale-down cooldown, {since:.0f}s since the last"
                         f" change < {cooldown_down_s:.0f}s")
    return desired, f"scale down {current} -> {desired}"
