"""Node pools the scaler may act on, as the operator declares them in the ConfigMap.

Only the operator names pools and bounds them; a ScaledObject can only name a pool
(``nodePool``) that is declared here, from a namespace the pool lists, and what it asks is
clamped to the pool's ``max_nodes``. What a pool does with the node plans is
``scaler.service.node_pools``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from scaler.schema import Problem, above, at_least, build, setting

Actuator = Literal["dry-run", "machinedeployment", "placeholder"]
ACTUATORS: tuple[str, ...] = get_args(Actuator)
CapiVersion = Literal["v1beta1", "v1beta2"]
CAPI_VERSIONS: tuple[str, ...] = get_args(CapiVersion)


def _whole(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ValueError(raw)
    return raw


def _names(raw: Any) -> tuple[str, ...]:
    """A YAML list of namespace names (DNS labels), in the order given, without repeats."""
    if not isinstance(raw, list | tuple) or not all(
            isinstance(name, str) and _DNS_LABEL.fullmatch(name) for name in raw):
        raise ValueError(raw)
    return tuple(dict.fromkeys(raw))


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class NodePool:
    """One pool: its actuator, what it scales, and the bounds the scaler keeps to."""

    name: str
    actuator: Actuator = setting(
        "dry-run", doc="`dry-run` (report only), `machinedeployment` (Cluster API) or "
                       "`placeholder` (a Deployment of low-priority GPU pods, one per node).")
    namespace: str = setting(
        "", doc="Namespace of the MachineDeployment or placeholder Deployment.")
    target: str = setting("", doc="Name of the MachineDeployment or placeholder Deployment.")
    gpus_per_node: int = setting(
        8, parse=_whole, check=at_least(1), accepted="a whole number >= 1",
        doc="GPUs one node of the pool holds.")
    cooldown_up_s: float = setting(
        60.0, check=at_least(0), doc="Seconds after a change before the pool grows again.")
    cooldown_down_s: float = setting(
        600.0, check=at_least(0), doc="Seconds after a change before the pool shrinks.")
    min_nodes: int = setting(
        0, parse=_whole, check=at_least(0), accepted="a whole number >= 0",
        doc="Fewest nodes the scaler asks of the pool.")
    max_nodes: int | None = setting(
        None, parse=_whole, check=at_least(1), accepted="a whole number >= 1",
        shown_default="required unless dry-run",
        doc="Most nodes the scaler asks of the pool, whatever its workloads ask (a workload's "
            "minNodes, spareNodes and maxNodes are clamped to it; a MachineDeployment's "
            "autoscaler annotations apply as well).")
    namespaces: tuple[str, ...] = setting(
        (), parse=_names, accepted="a list of namespace names",
        shown_default="required unless dry-run",
        doc="Namespaces whose workloads may count toward the pool: a ScaledObject elsewhere "
            "that names it with nodePool is refused (INVALID_ARGUMENT). Unset on a dry-run "
            "pool: any namespace.")
    api_version: CapiVersion = setting(
        "v1beta1", doc="Cluster API version of a machinedeployment pool.")

    def validate(self) -> list[str]:
        path = f"node_pools.pools.{self.name}."
        acts = self.actuator != "dry-run"
        problems = [f"{path}{key}: required for the {self.actuator} actuator"
                    for key in ("namespace", "target") if acts and not getattr(self, key)]
        if acts and self.max_nodes is None:
            problems.append(f"{path}max_nodes: required for the {self.actuator} actuator: the "
                            "most nodes any workload may make the scaler ask of the pool")
        if acts and not self.namespaces:
            problems.append(f"{path}namespaces: required for the {self.actuator} actuator: "
                            "list the namespaces whose workloads may count toward the pool")
        if self.max_nodes is not None and self.min_nodes > self.max_nodes:
            problems.append(f"{path}min_nodes: {self.min_nodes} is greater than max_nodes "
                            f"({self.max_nodes})")
        return problems


@dataclass(frozen=True)
class NodePoolSettings:
    """Node pools the scaler acts on (empty: node plans are only reported as metrics).

    ``pools`` maps a pool name (used by the ``nodePool`` metadata key) to its actuator:
    ``dry-run`` (report only), ``machinedeployment`` (Cluster API, e.g. Metal3 bare metal:
    ``namespace``/``target`` name the MachineDeployment, ``api_version`` v1beta1 or v1beta2;
    its autoscaler min/max annotations are honoured) or ``placeholder`` (a Deployment of
    low-priority GPU pods, one per node, whose replicas are the nodes wanted beyond current
    use). ``min_nodes``/``max_nodes`` bound what the scaler asks of any pool; an acting pool
    must name ``max_nodes`` and the ``namespaces`` whose workloads may count toward it. Only
    the holder of the Lease ``lease_namespace``/``lease_name`` acts; without
    ``lease_namespace`` only dry-run pools run. After a start and after taking the Lease, a
    pool does not shrink for its ``cooldown_down_s``, nor, for up to twice that, while a
    workload that counted toward it before (the Lease remembers them) has not come back.
    """

    interval_s: float = setting(30.0, check=above(0), doc="Seconds between two node rounds.")
    lease_namespace: str = setting(
        "", doc="Namespace of the Lease that elects the one scaler replica that acts.")
    lease_name: str = setting("llm-predictive-scaler", doc="Name of that Lease.")
    pools: tuple[NodePool, ...] = ()

    def validate(self) -> list[str]:
        acting = [p.name for p in self.pools if p.actuator != "dry-run"]
        if acting and not self.lease_namespace:
            return ["node_pools.lease_namespace: required when a pool acts ("
                    + ", ".join(acting) + "): only one scaler replica may change nodes"]
        return []

    @classmethod
    def from_document(cls, value: Any, path: str, problems: list[Problem]) -> NodePoolSettings:
        """The section from its YAML mapping, adding every problem (keys as dotted paths)."""
        if not isinstance(value, Mapping):
            problems.append(_at(f"{path.rstrip('.')}: must be a mapping of keys"))
            return cls()
        raw_pools = value.get("pools") or {}
        if not isinstance(raw_pools, Mapping):
            problems.append(_at(f"{path}pools: must be a mapping of pool name to its settings"))
            raw_pools = {}
        pools = tuple(_pool(str(name), body, f"{path}pools.{name}.", problems)
                      for name, body in raw_pools.items())
        scalars = {k: v for k, v in value.items() if k != "pools"}
        settings, found = build(cls, scalars, known=("pools",), given={"pools": pools})
        problems += [_under(p, path) for p in found]
        return settings or cls(pools=pools)


def _pool(name: str, body: Any, path: str, problems: list[Problem]) -> NodePool:
    if not isinstance(body, Mapping):
        problems.append(_at(f"{path.rstrip('.')}: must be a mapping of keys"))
        return NodePool(name)
    pool, found = build(NodePool, body, given={"name": name})
    problems += [_under(p, path) for p in found]
    return pool or NodePool(name)


def _at(message: str) -> Problem:
    return Problem("rule", "", None, message)


def _under(problem: Problem, path: str) -> Problem:
    """The problem with its key as a dotted config path (rules name theirs already)."""
    if problem.kind == "rule":
        return problem
    return Problem(problem.kind, f"{path}{problem.key}", problem.raw, problem.detail,
                   problem.field)
