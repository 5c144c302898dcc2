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
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio.client import ApiClient, AppsV1Api, CoreV1Api, CustomObjectsApi
from prometheus_client import CollectorRegistry, Counter, Gauge

from adapters.kubernetes.events import ObjectRef, post_event
from adapters.kubernetes.nodes import (
    ActuatorError,
    DryRunActuator,
    MachineDeploymentActuator,
    NodeActuator,
    PlaceholderActuator,
    node_change,
)
from scaler.clock import Clock
from scaler.model.predictive import replicas_per_node
from scaler.service.supervise import supervise
from scaler.service.workloads import Workload

log = logging.getLogger("scaler.nodes")

ACTUATORS = ("dry-run", "machinedeployment", "placeholder")


@dataclass(frozen=True)
class NodePool:
    name: str
    actuator: str = "dry-run"  # one of ACTUATORS
    namespace: str = ""  # of the MachineDeployment or placeholder Deployment
    target: str = ""  # its name
    gpus_per_node: int = 8
    cooldown_up_s: float = 60.0
    cooldown_down_s: float = 600.0
    min_nodes: int = 0  # the pool's own bounds on what the scaler asks for (a MachineDeployment's
    max_nodes: int | None = None  # autoscaler annotations apply as well)
    api_version: str = "v1beta1"  # Cluster API version of a machinedeployment pool


CAPI_VERSIONS = ("v1beta1", "v1beta2")


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
            found.nodes_in_use += len(w.pods) / replicas_per_node(w.spec.gpus_per_replica,
                                                                  pool.gpus_per_node)
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
        wanted = max(demand.nodes, pool.min_nodes)  # the pool's bounds are on its nodes
        if pool.max_nodes is not None:
            wanted = min(wanted, pool.max_nodes)
        if isinstance(state.actuator, PlaceholderActuator):  # nodes beyond what runs now
            wanted = max(0, wanted - math.ceil(demand.nodes_in_use - 1e-9))
        try:
            now_target = await state.actuator.current()
        except ActuatorError as exc:
            self._count(pool, "failed", f"cannot read: {exc}")
            return
        current = now_target.replicas
        self.nodes.labels(pool.name, "requested").set(current)
        if now_target.ready is not None:
            self.nodes.labels(pool.name, "ready").set(now_target.ready)
        joining = max(0, current - now_target.ready) if now_target.ready is not None else 0
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


@dataclass(frozen=True)
class NodePoolSettings:
    """Node pools the scaler acts on (empty: node plans are only reported as metrics).

    ``pools`` maps a pool name (used by the ``nodePool`` metadata key) to its actuator:
    ``dry-run`` (report only), ``machinedeployment`` (Cluster API, e.g. Metal3 bare metal:
    ``namespace``/``target`` name the MachineDeployment, ``api_version`` v1beta1 or v1beta2;
    its autoscaler min/max annotations are honoured) or ``placeholder`` (a Deployment of
    low-priority GPU pods, one per node, whose replicas are the nodes wanted beyond current
    use). ``min_nodes``/``max_nodes`` bound what the scaler asks of any pool. Only the holder
    of the Lease ``lease_namespace``/``lease_name`` acts; without ``lease_namespace`` only
    dry-run pools run.
    """

    interval_s: float = 30.0
    lease_namespace: str = ""
    lease_name: str = "llm-predictive-scaler"
    pools: tuple[NodePool, ...] = field(default_factory=tuple)

    @classmethod
    def from_document(cls, value: Any, path: str, problems: list[str]) -> NodePoolSettings:
        if not isinstance(value, dict):
            problems.append(f"{path.rstrip('.')}: must be a mapping of keys")
            return cls()
        known = {"interval_s", "lease_namespace", "lease_name", "pools"}
        for key in value:
            if key not in known:
                problems.append(f"{path}{key}: unknown key; known keys in 'node_pools': "
                                + ", ".join(sorted(known)))
        interval = value.get("interval_s", 30.0)
        if not _number(interval) or interval <= 0:
            problems.append(f"{path}interval_s: {interval!r} is not a number > 0 (seconds)")
            interval = 30.0
        raw_pools = value.get("pools") or {}
        if not isinstance(raw_pools, dict):
            problems.append(f"{path}pools: must be a mapping of pool name to its settings")
            raw_pools = {}
        pools = tuple(_pool(name, body, f"{path}pools.{name}.", problems)
                      for name, body in raw_pools.items())
        lease_ns = str(value.get("lease_namespace", ""))
        acting = [p.name for p in pools if p.actuator != "dry-run"]
        if acting and not lease_ns:
            problems.append(f"{path}lease_namespace: required when a pool acts ("
                            + ", ".join(acting) + "): only one scaler replica may change nodes")
        return cls(float(interval), lease_ns, str(value.get("lease_name", cls.lease_name)),
                   pools)


def _pool(name: str, body: Any, path: str, problems: list[str]) -> NodePool:
    if not isinstance(body, dict):
        problems.append(f"{path.rstrip('.')}: must be a mapping of keys")
        return NodePool(str(name))
    known = {"actuator", "namespace", "target", "gpus_per_node", "cooldown_up_s",
             "cooldown_down_s", "min_nodes", "max_nodes", "api_version"}
    for key in body:
        if key not in known:
            problems.append(f"{path}{key}: unknown key; known keys: " + ", ".join(sorted(known)))
    actuator = str(body.get("actuator", "dry-run"))
    if actuator not in ACTUATORS:
        problems.append(f"{path}actuator: {actuator!r} is not one of " + ", ".join(ACTUATORS))
    if actuator in ("machinedeployment", "placeholder"):
        for key in ("namespace", "target"):
            if not body.get(key):
                problems.append(f"{path}{key}: required for the {actuator} actuator")
    numbers = {}
    for key, default in (("cooldown_up_s", 60.0), ("cooldown_down_s", 600.0)):
        raw = body.get(key, default)
        if not _number(raw) or raw < 0:
            problems.append(f"{path}{key}: {raw!r} is not a number >= 0 (seconds)")
            raw = default
        numbers[key] = raw
    gpus = body.get("gpus_per_node", 8)
    if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 1:
        problems.append(f"{path}gpus_per_node: {gpus!r} is not a whole number >= 1")
        gpus = 8
    numbers["gpus_per_node"] = gpus
    low = _whole(body, "min_nodes", 0, 0, path, problems)
    high = _whole(body, "max_nodes", None, 1, path, problems)
    if high is not None and low is not None and low > high:
        problems.append(f"{path}min_nodes: {low} is greater than max_nodes ({high})")
    version = str(body.get("api_version", "v1beta1"))
    if version not in CAPI_VERSIONS:
        problems.append(f"{path}api_version: {version!r} is not one of "
                        + ", ".join(CAPI_VERSIONS))
    return NodePool(str(name), actuator, str(body.get("namespace", "")),
                    str(body.get("target", "")), int(numbers["gpus_per_node"]),
                    float(numbers["cooldown_up_s"]), float(numbers["cooldown_down_s"]),
                    low or 0, high, version)


def _whole(body: Mapping[str, Any], key: str, default: int | None, least: int, path: str,
           problems: list[str]) -> int | None:
    """An optional whole number >= ``least`` from a pool's settings (bad: named, default)."""
    raw = body.get(key, default)
    if raw is None:
        return None
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < least:
        problems.append(f"{path}{key}: {raw!r} is not a whole number >= {least}")
        return default
    return raw


def _number(value: Any) -> bool:
    """A finite int or float (YAML's .nan and .inf are floats; booleans are not numbers)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
