"""Replicas and bare-metal nodes with real lead times, and what they cost.

A replica asked for now is *pending* until a ready node has free GPUs for it,
then *starting* for ``pod_startup_s`` (image, weights, warm-up), then *ready*.
A node asked for now is ready after ``node_startup_s`` (bare metal: provisioning,
boot, GPU operator, join). Removing replicas takes pending ones first, then
starting ones, then ready ones, newest first (as a ReplicaSet deletes unready pods
first). A node is removed only when it holds no replica; nodes that are not
ready yet go first.

Cost: every GPU of every replica placed on a node (starting ones too: their GPUs
are held while weights load) and every node that exists, ready or not.
A pending replica holds no GPU. Time is passed in; nothing here sleeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scaler.model.nodes import nodes_for, replicas_per_node


@dataclass
class Replica:
    id: str
    created_s: float
    node: str | None = None
    ready_s: float | None = None  # set when placed on a node

    def is_ready(self, now_s: float) -> bool:
        return self.ready_s is not None and self.ready_s <= now_s


@dataclass
class Node:
    id: str
    created_s: float
    ready_s: float
    empty_since_s: float | None = None


@dataclass(frozen=True)
class ClusterCounts:
    replicas: int
    ready_replicas: int
    starting_replicas: int
    pending_replicas: int
    nodes: int
    ready_nodes: int


class Cluster:
    def __init__(self, *, pod_startup_s: float, node_startup_s: float, gpus_per_replica: int,
                 gpus_per_node: int) -> None:
        if gpus_per_replica < 1 or gpus_per_node < gpus_per_replica:
            raise ValueError(
                f"gpus_per_replica ({gpus_per_replica}) must be >= 1 and at most gpus_per_node "
                f"({gpus_per_node})")
        self.pod_startup_s = pod_startup_s
        self.node_startup_s = node_startup_s
        self.gpus_per_replica = gpus_per_replica
        self.gpus_per_node = gpus_per_node
        self.replicas: list[Replica] = []
        self.nodes: list[Node] = []
        self.gpu_seconds = 0.0
        self.node_seconds = 0.0
        self._serial = 0
        # Cached view, valid until the next change or the next readiness time.
        self._valid_until_s = -math.inf
        self._counts = ClusterCounts(0, 0, 0, 0, 0, 0)
        self._ready_ids: list[str] = []
        self._placed = 0

    @property
    def replicas_per_node(self) -> int:
        return replicas_per_node(self.gpus_per_replica, self.gpus_per_node)

    def nodes_for(self, replicas: int) -> int:
        return nodes_for(replicas, gpus_per_replica=self.gpus_per_replica,
                         gpus_per_node=self.gpus_per_node)

    def start_warm(self, *, replicas: int, nodes: int, now_s: float = 0.0) -> None:
        """Begin with ready nodes and ready replicas (a fleet already serving)."""
        for _ in range(max(nodes, self.nodes_for(replicas))):
            self.nodes.append(Node(self._name("node"), now_s, now_s))
        for _ in range(replicas):
            self.replicas.append(Replica(self._name("pod"), now_s))
        self._place(now_s)
        for replica in self.replicas:
            replica.ready_s = now_s
        self._valid_until_s = -math.inf

    def scale_replicas(self, desired: int, now_s: float) -> None:
        while len(self.replicas) < desired:
            self.replicas.append(Replica(self._name("pod"), now_s))
        if len(self.replicas) > desired:
            order = sorted(self.replicas, key=lambda r: (_removal_rank(r, now_s), -r.created_s))
            doomed = {id(r) for r in order[: len(self.replicas) - desired]}
            self.replicas = [r for r in self.replicas if id(r) not in doomed]
        self._valid_until_s = -math.inf

    def scale_nodes(self, desired: int, now_s: float) -> None:
        while len(self.nodes) < desired:
            self.nodes.append(Node(self._name("node"), now_s, now_s + self.node_startup_s))
        excess = len(self.nodes) - desired
        if excess > 0:
            used = {r.node for r in self.replicas}
            empty = [n for n in self.nodes if n.id not in used]
            empty.sort(key=lambda n: (n.ready_s <= now_s, -n.created_s))
            doomed = {n.id for n in empty[:excess]}
            self.nodes = [n for n in self.nodes if n.id not in doomed]
        self._valid_until_s = -math.inf

    def advance(self, now_s: float, dt_s: float) -> None:
        """Place pending replicas on nodes that became ready; charge ``dt_s`` of cost."""
        self._refresh(now_s)
        self.gpu_seconds += self._placed * self.gpus_per_replica * dt_s
        self.node_seconds += len(self.nodes) * dt_s

    def counts(self, now_s: float) -> ClusterCounts:
        self._refresh(now_s)
        return self._counts

    def ready_ids(self, now_s: float) -> list[str]:
        self._refresh(now_s)
        return self._ready_ids

    def empty_nodes_since(self, now_s: float) -> dict[str, float]:
        """Ready nodes without replicas, with the time they became empty."""
        used = {r.node for r in self.replicas}
        for node in self.nodes:
            if node.id in used or node.ready_s > now_s:
                node.empty_since_s = None
            elif node.empty_since_s is None:
                node.empty_since_s = now_s
        return {n.id: n.empty_since_s for n in self.nodes if n.empty_since_s is not None}

    def _refresh(self, now_s: float) -> None:
        if now_s < self._valid_until_s:
            return
        self._place(now_s)
        ready = [r.id for r in self.replicas if r.is_ready(now_s)]
        pending = sum(1 for r in self.replicas if r.node is None)
        self._ready_ids = ready
        self._placed = len(self.replicas) - pending
        self._counts = ClusterCounts(
            replicas=len(self.replicas), ready_replicas=len(ready),
            starting_replicas=len(self.replicas) - len(ready) - pending,
            pending_replicas=pending, nodes=len(self.nodes),
            ready_nodes=sum(1 for n in self.nodes if n.ready_s <= now_s))
        upcoming = [r.ready_s for r in self.replicas if r.ready_s is not None and r.ready_s > now_s]
        upcoming += [n.ready_s for n in self.nodes if n.ready_s > now_s]
        self._valid_until_s = min(upcoming, default=math.inf)

    def _place(self, now_s: float) -> None:
        free = {n.id: self.replicas_per_node for n in self.nodes if n.ready_s <= now_s}
        for replica in self.replicas:
            if replica.node is not None and replica.node in free:
                free[replica.node] -= 1
        for replica in self.replicas:
            if replica.node is not None:
                continue
            node = next((n for n, slots in free.items() if slots > 0), None)
            if node is None:
                return
            free[node] -= 1
            replica.node = node
            replica.ready_s = now_s + self.pod_startup_s

    def _name(self, kind: str) -> str:
        self._serial += 1
        return f"{kind}-{self._serial}"


def _removal_rank(replica: Replica, now_s: float) -> int:
    if replica.node is None:
        return 0
    return 1 if not replica.is_ready(now_s) else 2
