"""Node capacity, acted on: each node pool gets the nodes its workloads' plans need.

Every ``interval_s`` the controller sums, per pool, the node plans of the predictive
workloads that name it (``nodePool`` metadata), turns that into the actuator's count
(a Cluster API MachineDeployment's replicas; for a placeholder Deployment, the nodes wanted
beyond what the workloads' replicas already use), applies the guard (never shrink while
pods are pending, cooldowns) and scales. Only the Lease holder acts; a pool in dry-run only
reports. Each change is a Kubernetes Event on the scaled object, a metric and one log line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kubernetes_asyncio.client import ApiClient, AppsV1Api, CoreV1Api, CustomObjectsApi
from prometheus_client import CollectorRegistry, Counter, Gauge

from adapters.kubernetes.events import ObjectRef, post_event
from adapters.kubernetes.nodes import (
    ActuatorError,
    DryRunActuator,
    MachineDeploymentActuator,
    NodeActuator,
    PlaceholderActuator,
)
from scaler.clock import Clock
from scaler.config.node_pools import NodePool
from scaler.model.nodes import (
    node_change,
    nodes_filled,
    nodes_joining,
    placeholder_nodes,
    pool_nodes,
)
from scaler.service.supervise import supervise
from scaler.service.workloads import Workload

log = logging.getLogger("scaler.nodes")

@dataclass
class _PoolState:
    pool: NodePool
    actuator: NodeActuator
    involved: ObjectRef | None
    last_change_s: float | None = None


@dataclass
class PoolDemand:
    nodes: int = 0  # the sum of the workloads' node plans
    nodes_in_use: float = 0.0  # nodes the replicas that exist now fill (whole replicas each)
    pending_pods: int = 0
    workloads: int = 0


class NodePoolController:
    def __init__(self, pools: Iterable[NodePool], *, workloads: Callable[[], Iterable[Workload]],
                 api: ApiClient | None, is_leader: Callable[[], bool],
                 clock: Clock, registry: CollectorRegistry,
                 interval_s: float = 30.0) -> None:
        self._workloads = workloads
        self._api = api
        self._is_leader = is_leader
        self._clock = clock
        self.interval_s = interval_s
        self._pools = [self._state(pool) for pool in pools]
        self.desired = Gauge("scaler_node_pool_desired_nodes",
                             "Nodes the pool's workloads plan for one node lead time ahead.",
                             ["pool"], registry=registry)
        self.actions = Counter("scaler_node_pool_actions_total",
                               "Node pool scale decisions by result (scaled, held, dry_run, "
                               "not_leader, failed).", ["pool", "result"], registry=registry)
        self.nodes = Gauge("scaler_node_pool_nodes",
                           "Nodes the actuator's object asks for (requested; placeholder pods for "
                           "a placeholder pool) and reports ready, where it says.",
                           ["pool", "state"], registry=registry)

    def _state(self, pool: NodePool) -> _PoolState:
        if pool.actuator == "dry-run" or self._api is None:
            if pool.actuator != "dry-run":
                log.error("node pool %s: %s needs the Kubernetes API; reporting only",
                          pool.name, pool.actuator)
            return _PoolState(pool, DryRunActuator(), None)
        if pool.actuator == "machinedeployment":
            actuator: NodeActuator = MachineDeploymentActuator(
                CustomObjectsApi(self._api), pool.namespace, pool.target,
                version=pool.api_version)
            ref = ObjectRef("MachineDeployment", pool.target, pool.namespace,
                            f"cluster.x-k8s.io/{pool.api_version}")
        else:
            actuator = PlaceholderActuator(AppsV1Api(self._api), pool.namespace, pool.target)
            ref = ObjectRef("Deployment", pool.target, pool.namespace, "apps/v1")
        return _PoolState(pool, actuator, ref)

    def demand(self, pool: NodePool) -> PoolDemand:
        found = PoolDemand()
        for w in self._workloads():
            if w.spec.node_pool != pool.name or w.plan is None:
                continue
            found.workloads += 1
            # What its decisions last asked for: a hold on missing data holds nodes too, and
            # an UNAVAILABLE workload keeps its last ask.
            found.nodes += w.plan.nodes if w.asked_nodes is None else w.asked_nodes
            found.nodes_in_use += nodes_filled(
                len(w.pods), gpus_per_replica=w.spec.nodes.gpus_per_replica,
                gpus_per_node=pool.gpus_per_node)
            if w.discovery is not None:
                found.pending_pods += w.discovery.counts().pending
        return found

    async def round(self) -> None:
        for state in self._pools:
            await self._act(state)

    async def _act(self, state: _PoolState) -> None:
        pool = state.pool
        demand = self.demand(pool)
        if demand.workloads == 0:
            return  # no plan names this pool yet: nothing to go on
        self.desired.labels(pool.name).set(demand.nodes)
        wanted = pool_nodes(demand.nodes, min_nodes=pool.min_nodes, max_nodes=pool.max_nodes)
        if isinstance(state.actuator, PlaceholderActuator):
            wanted = placeholder_nodes(wanted, demand.nodes_in_use)
        try:
            now_target = await state.actuator.current()
        except ActuatorError as exc:
            self._count(pool, "failed", f"cannot read: {exc}")
            return
        current = now_target.replicas
        self.nodes.labels(pool.name, "requested").set(current)
        if now_target.ready is not None:
            self.nodes.labels(pool.name, "ready").set(now_target.ready)
        joining = nodes_joining(current, now_target.ready)
        now = self._clock.monotonic()
        target, why = node_change(current, wanted, pending_pods=demand.pending_pods,
                                  joining_nodes=joining, last_change_s=state.last_change_s,
                                  now_s=now, cooldown_up_s=pool.cooldown_up_s,
                                  cooldown_down_s=pool.cooldown_down_s)
        if target == current:
            self.actions.labels(pool.name, "held").inc()
            return
        if not isinstance(state.actuator, DryRunActuator) and not self._is_leader():
            self.actions.labels(pool.name, "not_leader").inc()
            return
        await self._scale(state, target, f"{why} (plan: {demand.nodes} nodes for "
                                         f"{demand.workloads} workload(s))")

    async def _scale(self, state: _PoolState, target: int, why: str) -> None:
        pool = state.pool
        try:
            result = await state.actuator.scale(target, reason=why)
        except ActuatorError as exc:
            self._count(pool, "failed", str(exc))
            return
        if isinstance(state.actuator, DryRunActuator):
            self._count(pool, "dry_run", result.message, level=logging.INFO)
            return
        state.last_change_s = self._clock.monotonic()
        self._count(pool, "scaled", result.message, level=logging.INFO)
        if state.involved is not None and self._api is not None:
            await post_event(CoreV1Api(self._api), namespace=pool.namespace,
                             involved=state.involved, reason="NodeCapacityPlanned",
                             message=result.message)

    def _count(self, pool: NodePool, result: str, message: str,
               level: int = logging.WARNING) -> None:
        self.actions.labels(pool.name, result).inc()
        log.log(level, "node pool %s: %s", pool.name, message)

    async def run(self) -> None:
        await supervise("node pool round", self.round, self.interval_s, log=log)
