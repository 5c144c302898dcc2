"""The pod model of discovery: which pods to find, and what is known of each (pure, no I/O).

``WorkloadTarget`` names the pods (a Deployment's, a StatefulSet's or a bare label selector's)
and where their metrics are served; ``selector_from_spec`` turns a workload object's
``spec.selector`` into the selector string a LIST takes; ``pod_info`` reads the few fields of a
pod's JSON the scaler needs into ``PodInfo``, whose ``state`` is its ``PodReadiness``;
``PodCounts`` counts pods by it. The reflector (``discovery``) keeps these current.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from adapters.kubernetes import wire
from adapters.kubernetes.errors import DiscoveryError

__all__ = [
    "PodCounts",
    "PodInfo",
    "PodReadiness",
    "WorkloadKind",
    "WorkloadTarget",
    "pod_info",
    "selector_from_spec",
]

WorkloadKind = Literal["Deployment", "StatefulSet", "selector"]
PodReadiness = Literal["ready", "starting", "pending", "terminating", "finished", "unknown"]

_KINDS: tuple[WorkloadKind, ...] = ("Deployment", "StatefulSet", "selector")
_OPERATORS = "In, NotIn, Exists, DoesNotExist"


@dataclass(frozen=True)
class WorkloadTarget:
    """Which pods to find: a Deployment's, a StatefulSet's, or those of a bare label selector."""

    namespace: str
    kind: WorkloadKind
    name: str
    selector: str | None
    port: int = 8000
    path: str = "/metrics"

    def __post_init__(self) -> None:
        problem = _target_problem(self)
        if problem is not None:
            raise ValueError(problem)

    @property
    def describe(self) -> str:
        """``Deployment llm/llama`` or ``pods llm/app=llama``, for messages."""
        if self.kind == "selector":
            return f"pods {self.namespace}/{self.selector}"
        return f"{self.kind} {self.namespace}/{self.name}"


def _target_problem(target: WorkloadTarget) -> str | None:
    if target.kind not in _KINDS:
        return (f"WorkloadTarget.kind must be 'Deployment', 'StatefulSet' or 'selector', "
                f"got {target.kind!r}")
    if not target.namespace:
        return "WorkloadTarget.namespace must be a namespace name, got ''"
    if not 1 <= target.port <= 65535:
        return f"WorkloadTarget.port must be 1..65535, got {target.port!r}"
    if not target.path.startswith("/"):
        return f"WorkloadTarget.path must start with '/', got {target.path!r}"
    if target.kind == "selector":
        if target.name:
            return f"WorkloadTarget(kind='selector') takes no name, got {target.name!r}"
        if not target.selector:
            return ("WorkloadTarget(kind='selector') needs a label selector such as "
                    f"'app=llama', got {target.selector!r}")
        return None
    if not target.name:
        return f"WorkloadTarget(kind={target.kind!r}) needs the {target.kind}'s name, got ''"
    if target.selector is not None:
        return (f"WorkloadTarget(kind={target.kind!r}) reads its selector from the "
                f"{target.kind}'s spec.selector; selector must be None, got {target.selector!r}")
    return None


@dataclass(frozen=True)
class PodInfo:
    """What discovery knows of one pod (from its last seen state)."""

    name: str
    namespace: str
    ip: str | None
    phase: str
    ready: bool                # the Ready condition is True
    created_s: float           # metadata.creationTimestamp, epoch seconds (0.0 if absent)
    started_s: float | None    # when Ready last became True (its lastTransitionTime)
    node: str | None           # spec.nodeName
    deleting: bool             # metadata.deletionTimestamp is set
    scheduled: bool = False    # has a node and the PodScheduled condition is not False

    def metrics_url(self, port: int, path: str) -> str | None:
        """``http://IP:PORT/PATH`` (IPv6 in brackets); None without a pod IP."""
        if self.ip is None:
            return None
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"http://{host}:{port}{path}"

    @property
    def state(self) -> PodReadiness:
        """Terminating (being deleted) > finished (Succeeded/Failed) > ready > pending (not
        scheduled) > starting (scheduled, Pending or Running, not Ready) > unknown."""
        if self.deleting:
            return "terminating"
        if self.phase in ("Succeeded", "Failed"):
            return "finished"
        if self.ready:
            return "ready"
        if self.phase == "Pending" and not self.scheduled:
            return "pending"
        if self.phase in ("Pending", "Running"):
            return "starting"
        return "unknown"


@dataclass(frozen=True)
class PodCounts:
    """Pods by state; finished (Succeeded/Failed) and Unknown-phase pods are in none."""

    ready: int
    starting: int      # scheduled, Pending (pulling, creating) or Running, not Ready
    pending: int       # phase Pending and not scheduled (no node, or PodScheduled False)
    terminating: int   # deletionTimestamp set

    @classmethod
    def of(cls, pods: Sequence[PodInfo]) -> PodCounts:
        states = [pod.state for pod in pods]
        return cls(ready=states.count("ready"), starting=states.count("starting"),
                   pending=states.count("pending"), terminating=states.count("terminating"))


def _epoch_s(value: object) -> float | None:
    """An RFC 3339 timestamp (``2024-05-01T10:00:00Z``) as epoch seconds; None if not one."""
    text = wire.text(value)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    conditions = status.get("conditions")
    for condition in conditions if isinstance(conditions, list) else []:
        if wire.mapping(condition).get("type") == kind:
            return wire.mapping(condition)
    return {}


def pod_info(obj: Mapping[str, Any]) -> PodInfo | None:
    """A pod's JSON (as the API sends it) as PodInfo; None without a name."""
    metadata = wire.mapping(obj.get("metadata"))
    name = wire.text(metadata.get("name"))
    if name is None:
        return None
    spec, status = wire.mapping(obj.get("spec")), wire.mapping(obj.get("status"))
    ready_condition = _condition(status, "Ready")
    ready = ready_condition.get("status") == "True"
    node = wire.text(spec.get("nodeName"))
    return PodInfo(
        name=name,
        namespace=wire.text(metadata.get("namespace")) or "",
        ip=wire.text(status.get("podIP")),
        phase=wire.text(status.get("phase")) or "Pending",
        ready=ready,
        created_s=_epoch_s(metadata.get("creationTimestamp")) or 0.0,
        started_s=_epoch_s(ready_condition.get("lastTransitionTime")) if ready else None,
        node=node,
        deleting=metadata.get("deletionTimestamp") is not None,
        scheduled=node is not None and _condition(status, "PodScheduled").get("status") != "False",
    )


def selector_from_spec(obj: Mapping[str, Any], owner: str) -> str:
    """The label selector string of a workload object's ``spec.selector``.

    ``owner`` names the object in messages (``Deployment llm/llama``). Raises DiscoveryError
    (key ``selector``) for an empty selector or an expression it cannot express.
    """
    selector = wire.mapping(wire.mapping(obj.get("spec")).get("selector"))
    terms = [f"{key}={value}" for key, value in wire.mapping(selector.get("matchLabels")).items()]
    expressions = selector.get("matchExpressions") or []
    if not isinstance(expressions, list):
        raise DiscoveryError("selector", (
            f"{owner}: spec.selector.matchExpressions must be a list, got {expressions!r}"))
    for index, expression in enumerate(expressions):
        where = f"{owner}: spec.selector.matchExpressions[{index}]"
        terms.append(_expression_term(wire.mapping(expression), where))
    if not terms:
        raise DiscoveryError("selector", (
            f"{owner} has an empty spec.selector, which would select every pod in the "
            "namespace; refusing to use it"))
    return ",".join(terms)


def _expression_term(expression: Mapping[str, Any], where: str) -> str:
    key, operator = wire.text(expression.get("key")), expression.get("operator")
    if key is None:
        raise DiscoveryError("selector", f"{where} has no key")
    if operator == "Exists":
        return key
    if operator == "DoesNotExist":
        return f"!{key}"
    if operator in ("In", "NotIn"):
        values = expression.get("values")
        if not isinstance(values, list) or not values or not all(
                isinstance(value, str) for value in values):
            raise DiscoveryError("selector", (
                f"{where} ({key} {operator}) needs a non-empty list of string values, "
                f"got {values!r}"))
        return f"{key} {'in' if operator == 'In' else 'notin'} ({','.join(values)})"
    raise DiscoveryError("selector", (
        f"{where} has operator {operator!r} (key {key!r}); supported: {_OPERATORS}"))
