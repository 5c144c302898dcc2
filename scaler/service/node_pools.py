"""Node capacity, acted on: each node pool gets the nodes its workloads' plans need.

Every ``interval_s`` the controller sums, per pool, the node plans of the predictive
workloads that name it (``nodePool`` metadata, from the namespaces the pool lists), turns that
into the actuator's count (a Cluster API MachineDeployment's replicas; for a placeholder
Deployment, the nodes wanted beyond what the workloads' replicas already use), applies the
guard (never shrink while pods are pending, nor during the warm-up; cooldowns) and scales.
Each change is a Kubernetes Event on the scaled object, a metric and one log line.

Only the Lease holder acts, and a lost leader never writes: leadership is asked just before
every write (the scale PATCH, the Event, the Lease's annotation); a 409 ends the round; every
call to the API server is cancelled once the leadership proven so far runs out (before the
Lease's renew deadline, so before anyone else may take over). A pool in dry-run only reports.

Restarts and failovers remove no node: this replica's own start, and each time it takes the
Lease, begins a warm-up (``scaler.model.nodes.warm_up``) from what the Lease remembers
(``scaler.service.pool_memory``: each pool's last change and the workloads counting toward
it), which the leader keeps current.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from kubernetes_asyncio.client import ApiClient, AppsV1Api, CoreV1Api, CustomObjectsApi
from prometheus_client import CollectorRegistry, Counter, Gauge

from adapters.kubernetes.deadline import Sleep, within
from adapters.kubernetes.events import ObjectRef, post_event
from adapters.kubernetes.nodes import (
    ActuatorError,
    Conflict,
    DryRunActuator,
    MachineDeploymentActuator,
    NodeActuator,
    PlaceholderActuator,
    WriteWithheld,
)
from scaler.clock import Clock
from scaler.config.node_pools import NodePool
from scaler.model.nodes import (
    node_change,
    nodes_filled,
    nodes_joining,
    placeholder_nodes,
    pool_nodes,
    warm_up,
)
from scaler.service.pool_memory import ANNOTATION, UNKNOWN, PoolRecord, decode, encode
from scaler.service.supervise import supervise
from scaler.service.workloads import Workload

log = logging.getLogger("scaler.nodes")

CALL_TIMEOUT_S = 10.0  # a call's limit when no leadership bounds it (the default renew deadline)
_T = TypeVar("_T")


class Leadership(Protocol):
    """What the controller needs of the Lease (``adapters.kubernetes.leader.LeaderElector``)."""

    @property
    def is_leader(self) -> bool: ...

    @property
    def term(self) -> int: ...  # changes each time this process takes the Lease

    @property
    def term_annotations(self) -> Mapping[str, str]: ...  # the Lease's when the term began

    def term_age_s(self) -> float: ...  # since the term began

    def time_left_s(self) -> float: ...

    async def annotate(self, values: Mapping[str, str]) -> bool: ...


@dataclass
class FixedLeadership:
    """Leadership without a Lease: a fixed answer; ``annotate`` keeps the values here. For
    dry-run-only setups (no Lease: nothing acts) and tests."""

    leader: bool = False
    term: int = 1
    term_annotations: Mapping[str, str] = field(default_factory=dict)
    written: dict[str, str] = field(default_factory=dict)

    @property
    def is_leader(self) -> bool:
        return self.leader

    def term_age_s(self) -> float:
        return 0.0  # the term begins at the first round

    def time_left_s(self) -> float:
        return CALL_TIMEOUT_S if self.leader else 0.0

    async def annotate(self, values: Mapping[str, str]) -> bool:
        if self.leader:
            self.written.update(values)
        return self.leader


@dataclass
class _PoolState:
    pool: NodePool
    actuator: NodeActuator
    involved: ObjectRef | None
    last_change_s: float | None = None  # monotonic
    last_change_wall: float | None = None  # the same moment, for the Lease
    warm_from_s: float = 0.0  # monotonic: this term's start
    warm: bool = True  # the warm-up of this term is not over
    before: frozenset[str] = frozenset()  # counted toward the pool before this term
    left_off: int = 0  # ... and how many more the Lease could not name
    counted: frozenset[str] = frozenset()  # counting toward it at the last round

    @property
    def dry(self) -> bool:
        return isinstance(self.actuator, DryRunActuator)

    def record(self) -> PoolRecord:
        """What the Lease should remember: while warming up, those not back yet as well."""
        if not self.warm:
            return PoolRecord(self.last_change_wall, self.counted)
        return PoolRecord(self.last_change_wall, self.counted | self.before, self.left_off)


@dataclass
class PoolDemand:
    nodes: int = 0  # the sum of the workloads' node plans
    nodes_in_use: float = 0.0  # nodes the replicas that exist now fill (whole replicas each)
    pending_pods: int = 0
    workloads: int = 0
    counted: frozenset[str] = frozenset()  # the workloads summed (namespace/name/metric)


class NodePoolController:
    def __init__(self, pools: Iterable[NodePool], *, workloads: Callable[[], Iterable[Workload]],
                 api: ApiClient | None, leadership: Leadership, clock: Clock,
                 registry: CollectorRegistry, interval_s: float = 30.0,
                 sleep: Sleep = asyncio.sleep, call_timeout_s: float = CALL_TIMEOUT_S) -> None:
        self._workloads = workloads
        self._api = api
        self._leadership = leadership
        self._clock = clock
        self._sleep = sleep
        self.interval_s = interval_s
        self.call_timeout_s = call_timeout_s
        self._pools = [self._state(pool) for pool in pools]
        self._term: int | None = None
        self._written: str | None = None  # the annotation as the Lease holds it
        self.desired = Gauge("scaler_node_pool_desired_nodes",
                             "Nodes the pool's workloads plan for one node lead time ahead.",
                             ["pool"], registry=registry)
        self.actions = Counter("scaler_node_pool_actions_total",
                               "Node pool scale decisions by result (scaled, held, dry_run, "
                               "not_leader, conflict, failed).", ["pool", "result"],
                               registry=registry)
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
        counted = set()
        for w in self._workloads():
            if w.spec.node_pool != pool.name or w.plan is None:
                continue
            if pool.namespaces and w.key.namespace not in pool.namespaces:
                continue  # refused at registration already; never counted, whatever happens
            found.workloads += 1
            counted.add(str(w.key))
            # What its decisions last asked for: a hold on missing data holds nodes too, and
            # an UNAVAILABLE workload keeps its last ask.
            found.nodes += w.plan.nodes if w.asked_nodes is None else w.asked_nodes
            found.nodes_in_use += nodes_filled(
                len(w.pods), gpus_per_replica=w.spec.nodes.gpus_per_replica,
                gpus_per_node=pool.gpus_per_node)
            if w.discovery is not None:
                found.pending_pods += w.discovery.counts().pending
        found.counted = frozenset(counted)
        return found

    async def round(self) -> None:
        """Act on each pool in turn; a 409 ends the round (another writer got in: maybe the
        new leader), the pools after it wait for the next."""
        self._begin_term()
        for state in self._pools:
            if not await self._act(state):
                break
        await self._remember()

    def _begin_term(self) -> None:
        """At the first round, and each time this replica takes the Lease: warm up again, from
        what the Lease remembers of each pool."""
        term = self._leadership.term
        if term == self._term:
            return
        self._term = term
        annotation = self._leadership.term_annotations.get(ANNOTATION)
        records, problem = decode(annotation)
        if problem is not None:
            log.warning("node pools: the Lease's memory is partly unreadable (%s): every such "
                        "pool warms up for twice its cooldown_down_s", problem)
        self._written = annotation
        now, wall = self._clock.monotonic(), self._clock.wall()
        began = now - self._leadership.term_age_s()  # the Lease was taken, not noticed
        for state in self._pools:
            fallback = UNKNOWN if problem is not None and not records else PoolRecord()
            record = records.get(state.pool.name, fallback)
            state.warm_from_s, state.warm = began, True
            state.before, state.left_off = record.workloads, record.left_off
            if record.last_change_wall is not None:
                # A wall clock ahead of ours (another node's) counts as "just now".
                at = now - max(0.0, wall - record.last_change_wall)
                if state.last_change_s is None or at > state.last_change_s:
                    state.last_change_s, state.last_change_wall = at, record.last_change_wall

    def _leading(self) -> bool:
        """Leading, in the term this round began in: a Lease taken in the middle of a round is
        acted on from the next one, once its warm-up has begun."""
        return self._leadership.is_leader and self._leadership.term == self._term

    def _warming(self, state: _PoolState, counted: frozenset[str], now: float) -> str | None:
        """Why the pool may not shrink yet in this term; ends the warm-up for good once over."""
        if not state.warm:
            return None
        missing = len(state.before - counted) + state.left_off
        why = warm_up(since_s=now - state.warm_from_s, cooldown_down_s=state.pool.cooldown_down_s,
                      missing=missing)
        if why is None:
            state.warm, state.before, state.left_off = False, frozenset(), 0
            if missing:
                log.info("node pool %s: warm-up over; %d workload(s) that counted toward it "
                         "before never came back", state.pool.name, missing)
        return why

    async def _act(self, state: _PoolState) -> bool:
        """One pool's round; False after a conflict (the round ends)."""
        pool = state.pool
        demand = self.demand(pool)
        state.counted = demand.counted
        warming = self._warming(state, demand.counted, self._clock.monotonic())
        if demand.workloads == 0:
            return True  # no plan names this pool yet: nothing to go on
        self.desired.labels(pool.name).set(demand.nodes)
        wanted = pool_nodes(demand.nodes, min_nodes=pool.min_nodes, max_nodes=pool.max_nodes)
        if isinstance(state.actuator, PlaceholderActuator):
            wanted = placeholder_nodes(wanted, demand.nodes_in_use)
        try:
            now_target = await self._call(state, state.actuator.current(), "read")
        except ActuatorError as exc:
            self._count(pool, "failed", f"cannot read: {exc}")
            return True
        current = now_target.replicas
        self.nodes.labels(pool.name, "requested").set(current)
        if now_target.ready is not None:
            self.nodes.labels(pool.name, "ready").set(now_target.ready)
        target, why = node_change(
            current, wanted, pending_pods=demand.pending_pods,
            joining_nodes=nodes_joining(current, now_target.ready),
            last_change_s=state.last_change_s, now_s=self._clock.monotonic(),
            cooldown_up_s=pool.cooldown_up_s, cooldown_down_s=pool.cooldown_down_s,
            warming_up=warming)
        if target == current:
            self.actions.labels(pool.name, "held").inc()
            return True
        if not state.dry and not self._leading():
            self.actions.labels(pool.name, "not_leader").inc()
            return True
        return await self._scale(state, target, f"{why} (plan: {demand.nodes} nodes for "
                                                f"{demand.workloads} workload(s))")

    async def _scale(self, state: _PoolState, target: int, why: str) -> bool:
        pool = state.pool
        may_write = (lambda: True) if state.dry else self._leading
        try:
            result = await self._call(
                state, state.actuator.scale(target, reason=why, may_write=may_write), "scale")
        except WriteWithheld as exc:
            self._count(pool, "not_leader", str(exc))
            return True
        except Conflict as exc:
            self._count(pool, "conflict", str(exc))
            return False
        except ActuatorError as exc:
            self._count(pool, "failed", str(exc))
            return True
        if state.dry:
            self._count(pool, "dry_run", result.message, level=logging.INFO)
            return True
        state.last_change_s, state.last_change_wall = self._clock.monotonic(), self._clock.wall()
        self._count(pool, "scaled", result.message, level=logging.INFO)
        if state.involved is not None and self._api is not None and self._leading():
            event = post_event(CoreV1Api(self._api), namespace=pool.namespace,
                               involved=state.involved, reason="NodeCapacityPlanned",
                               message=result.message, clock=self._clock.wall)
            try:
                await self._call(state, event, "post an Event")
            except ActuatorError as exc:
                log.warning("node pool %s: %s", pool.name, exc)
        return True

    async def _call(self, state: _PoolState, call: Awaitable[_T], what: str) -> _T:
        """``call``, cancelled once this replica's leadership runs out (a replica that is not
        the leader only reads: ``call_timeout_s``)."""
        limit = self.call_timeout_s
        if not state.dry and self._leadership.is_leader:
            limit = min(limit, self._leadership.time_left_s())
        try:
            return await within(call, limit, self._sleep)
        except TimeoutError as exc:
            raise ActuatorError(f"{what}: {exc} (the leadership proven so far ran out, or "
                                f"call_timeout_s); will retry next round") from exc

    async def _remember(self) -> None:
        """Keep the Lease's memory current: each pool's last change and who counts toward it."""
        if not self._leading():
            return
        text = encode({state.pool.name: state.record() for state in self._pools})
        if text == self._written:
            return
        if await self._leadership.annotate({ANNOTATION: text}):
            self._written = text
        else:
            log.warning("node pools: could not update the Lease's memory; next round again")

    def _count(self, pool: NodePool, result: str, message: str,
               level: int = logging.WARNING) -> None:
        self.actions.labels(pool.name, result).inc()
        log.log(level, "node pool %s: %s", pool.name, message)

    async def run(self) -> None:
        await supervise("node pool round", self.round, self.interval_s, log=log,
                        clock=self._clock, sleep=self._sleep)
