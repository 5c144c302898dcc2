"""Who may count toward a node pool, and how much: checked when a workload is resolved.

A node pool is shared, expensive capacity that only the operator declares
(``scaler.config.node_pools``); trigger metadata comes from whoever may write a ScaledObject.
So a workload naming a pool (``nodePool``) must come from a namespace the pool lists
(``namespaces``), refused before anything is registered or any connection made; and what its
metadata asks of the pool (``minNodes``, ``spareNodes``, ``maxNodes``) is clamped to the pool's
``max_nodes``, which the pool's summed ask never exceeds either.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable

from scaler.config.node_pools import NodePool
from scaler.keda.metadata import MetadataError, WorkloadSpec

log = logging.getLogger("scaler.nodes")

_KEYS = (("min_nodes", "minNodes"), ("spare_nodes", "spareNodes"), ("max_nodes", "maxNodes"))


def _pool(pools: Iterable[NodePool], name: str | None) -> NodePool | None:
    return None if name is None else next((p for p in pools if p.name == name), None)


def admit(pools: Iterable[NodePool], namespace: str, spec: WorkloadSpec) -> None:
    """Raise MetadataError (INVALID_ARGUMENT) if ``namespace`` may not count toward the pool
    ``spec`` names."""
    pool = _pool(pools, spec.node_pool)
    if pool is None or not pool.namespaces or namespace in pool.namespaces:
        return
    raise MetadataError([
        f"scalerMetadata key 'nodePool' has value {pool.name!r}: a workload in namespace "
        f"{namespace!r} may not count toward it (node_pools.pools.{pool.name}.namespaces: "
        f"{', '.join(pool.namespaces)}); remove nodePool, or ask the operator to list the "
        "namespace"])


def clamp_to_pool(pools: Iterable[NodePool], spec: WorkloadSpec) -> WorkloadSpec:
    """``spec`` with its node bounds and spares no higher than its pool's ``max_nodes``."""
    pool = _pool(pools, spec.node_pool)
    if pool is None or pool.max_nodes is None:
        return spec
    nodes = spec.nodes
    over = {field: getattr(nodes, field) for field, _ in _KEYS
            if getattr(nodes, field) > pool.max_nodes}
    if not over:
        return spec
    keys = {field: key for field, key in _KEYS}
    log.warning("a workload naming node pool %s asks %s: clamped to the pool's max_nodes %d",
                pool.name, ", ".join(f"{keys[f]} {v}" for f, v in over.items()), pool.max_nodes)
    clamped = dataclasses.replace(nodes, **{f: pool.max_nodes for f in over})
    return dataclasses.replace(spec, nodes=clamped)
