"""Act on node capacity: set the replicas of whatever stands for "GPU nodes" in the cluster.

The planner decides how many nodes it wants; this module only carries that number to the API
server, safely. Three actuators share one small interface (``NodeActuator``):

- ``MachineDeploymentActuator``: a Cluster API ``MachineDeployment`` (Metal3 on bare metal),
  through its ``scale`` subresource. Its bounds are the cluster-autoscaler annotations
  ``cluster.x-k8s.io/cluster-api-autoscaler-node-group-{min,max}-size`` on the object, so the
  scaler and cluster-autoscaler agree on the node group's limits.
- ``PlaceholderActuator``: a Deployment of negative-priority placeholder pods that request GPUs.
  More placeholders make cluster-autoscaler / Karpenter add nodes ahead of need; real pods
  preempt them at once. Bounds are given by the operator (constructor).
- ``DryRunActuator``: records the plan and changes nothing: how every predictive scaler starts.

Each write is a merge patch of ``spec.replicas`` on the ``scale`` subresource carrying the
``metadata.resourceVersion`` that was read, so the API server refuses it (409 Conflict) if the
object changed in between (a human, cluster-autoscaler or another scaler replica, maybe the
new leader). A conflict ends the attempt (``Conflict``): no re-read and re-patch, since the
writer that got there first may be the one entitled to; the next round starts from what it
wrote. Just before the write, ``scale`` asks ``may_write`` (is this replica still the leader?)
and writes nothing if not (``WriteWithheld``). Anything else the server refuses (429, 5xx,
404, ...) or a broken connection becomes one ``ActuatorError`` whose message says what failed;
the caller simply tries again next round. The desired count is clamped to the bounds, never
rejected, and the result says so. How long a call may take is the caller's to bound
(``adapters.kubernetes.deadline.within``).

Which count to ask for (the guard against shrinking while pods are pending or nodes joining,
the cooldowns) is decided before an actuator is called: ``scaler.model.nodes.node_change``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, Protocol, TypeVar

import aiohttp
from kubernetes_asyncio.client import AppsV1Api, CustomObjectsApi, V1Scale
from kubernetes_asyncio.client.exceptions import ApiException

__all__ = [
    "MAX_SIZE_ANNOTATION",
    "MIN_SIZE_ANNOTATION",
    "ActuatorError",
    "Conflict",
    "DryRunActuator",
    "MachineDeploymentActuator",
    "MayWrite",
    "NodeActuator",
    "NodeTarget",
    "PlaceholderActuator",
    "ScaleResult",
    "WriteWithheld",
    "clamp",
]

MIN_SIZE_ANNOTATION = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size"
MAX_SIZE_ANNOTATION = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size"
MERGE_PATCH = "application/merge-patch+json"
CAPI_GROUP, CAPI_VERSION, CAPI_PLURAL = "cluster.x-k8s.io", "v1beta1", "machinedeployments"

ClampedBy = Literal["min", "max"]
_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class NodeTarget:
    """The replicas an actuator controls now and its bounds (None: unbounded)."""

    replicas: int
    min: int | None
    max: int | None
    ready: int | None = None  # nodes ready now, where the object says (None: unknown)


@dataclasses.dataclass(frozen=True)
class ScaleResult:
    """What a ``scale`` call did: ``from_`` -> ``to``, which bound (if any) cut the request."""

    changed: bool
    from_: int
    to: int
    clamped_by: ClampedBy | None
    message: str


class ActuatorError(Exception):
    """The change could not be made this round; the message says why. Retry next round."""


class Conflict(ActuatorError):
    """The object changed between our read and our write (409): someone else wrote first."""


class WriteWithheld(ActuatorError):
    """``may_write`` said no just before the write: nothing was sent."""


MayWrite = Callable[[], bool]


def _always() -> bool:
    return True


class NodeActuator(Protocol):
    """Something whose replica count stands for GPU node capacity."""

    async def current(self) -> NodeTarget: ...

    async def scale(self, desired: int, *, reason: str,
                    may_write: MayWrite = _always) -> ScaleResult: ...


class _Conflict(Exception):
    """The object changed since it was read (HTTP 409)."""


@dataclasses.dataclass(frozen=True)
class _Snapshot:
    """One consistent read: the target and the resourceVersion to patch against."""

    target: NodeTarget
    resource_version: str | None


class _ScaleIO(Protocol):
    """The two API calls an actuator needs; errors already translated by ``_call``."""

    what: str

    async def read(self) -> _Snapshot: ...

    async def write(self, replicas: int, resource_version: str | None) -> None: ...


def clamp(desired: int, lo: int | None, hi: int | None) -> tuple[int, ClampedBy | None]:
    """``desired`` within [lo, hi] and which bound moved it."""
    if lo is not None and desired < lo:
        return lo, "min"
    if hi is not None and desired > hi:
        return hi, "max"
    return desired, None


async def _call(what: str, verb: str, call: Awaitable[_T]) -> _T:
    """Await one API call; a 409 becomes ``_Conflict``, any other failure an ``ActuatorError``."""
    try:
        return await call
    except ApiException as exc:
        if exc.status == 409:
            raise _Conflict(what) from exc
        if exc.status == 404:
            raise ActuatorError(f"{what} not found (404 on {verb})") from exc
        raise ActuatorError(
            f"{what}: the API server answered {exc.status} {exc.reason} to {verb};"
            " will retry next round") from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ActuatorError(
            f"{what}: {verb} failed: {type(exc).__name__}: {exc}; will retry next round") from exc


def _describe(what: str, result: ScaleResult, desired: int, reason: str) -> str:
    """E.g. ``MachineDeployment ns/md: scaled 2 -> 5 (wanted 7, clamped to max size 5): why``."""
    moved = f"scaled {result.from_} -> {result.to}" if result.changed else f"kept at {result.to}"
    bound = ("" if result.clamped_by is None else
             f" (wanted {desired}, clamped to {result.clamped_by} size {result.to})")
    return f"{what}: {moved}{bound}: {reason}"


async def _scale(io: _ScaleIO, desired: int, reason: str, may_write: MayWrite) -> ScaleResult:
    """Read, clamp, ask ``may_write``, patch against what was read; a 409 ends it there."""
    if desired < 0:
        raise ValueError(f"desired replicas must be >= 0, got {desired}")
    snap = await _call_read(io)
    to, clamped_by = clamp(desired, snap.target.min, snap.target.max)
    changed = to != snap.target.replicas
    if changed:
        if not may_write():
            raise WriteWithheld(f"{io.what}: not scaled {snap.target.replicas} -> {to}: this"
                                " replica may no longer write (it lost the Lease)")
        try:
            await io.write(to, snap.resource_version)
        except _Conflict as exc:
            raise Conflict(
                f"{io.what}: changed since it was read (409 Conflict: another writer got there"
                f" first); not scaled to {to}: the next round starts from what it wrote") from exc
    result = ScaleResult(changed, snap.target.replicas, to, clamped_by, "")
    return dataclasses.replace(result, message=_describe(io.what, result, desired, reason))


async def _call_read(io: _ScaleIO) -> _Snapshot:
    """A read alone: a 409 here is as unexpected as any other refusal."""
    try:
        return await io.read()
    except _Conflict as exc:
        raise ActuatorError(f"{io.what}: 409 Conflict on a read; will retry next round") from exc


def _bound(annotations: Mapping[str, str], key: str, what: str) -> int | None:
    """An autoscaler size annotation as an int; absent is None, garbage an ActuatorError."""
    raw = annotations.get(key)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ActuatorError(
            f"{what}: annotation '{key}' has value {raw!r}. Not a non-negative integer.")
    return value


def _bounds(annotations: Mapping[str, str], what: str) -> tuple[int | None, int | None]:
    lo = _bound(annotations, MIN_SIZE_ANNOTATION, what)
    hi = _bound(annotations, MAX_SIZE_ANNOTATION, what)
    if lo is not None and hi is not None and lo > hi:
        raise ActuatorError(f"{what}: min-size annotation {lo} > max-size annotation {hi}")
    return lo, hi


def _replicas(scale: dict[str, Any] | V1Scale) -> int:
    """``spec.replicas`` of a Scale: a dict (custom objects) or a V1Scale (Deployments)."""
    if isinstance(scale, V1Scale):
        return (scale.spec.replicas if scale.spec else None) or 0
    return int(scale.get("spec", {}).get("replicas") or 0)


def _resource_version(scale: dict[str, Any] | V1Scale) -> str | None:
    if isinstance(scale, V1Scale):
        return scale.metadata.resource_version if scale.metadata else None
    version = scale.get("metadata", {}).get("resourceVersion")
    return None if version is None else str(version)


def _patch_body(replicas: int, resource_version: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"spec": {"replicas": replicas}}
    if resource_version is not None:
        body["metadata"] = {"resourceVersion": resource_version}
    return body


class MachineDeploymentActuator:
    """Scale a Cluster API MachineDeployment within its cluster-autoscaler size annotations.

    ``version``: Cluster API v1.11+ serves v1beta2 and marks v1beta1 deprecated (still served);
    both have the same ``scale`` subresource. Custom objects take no strategic merge patch, and
    kubernetes_asyncio would pick JSON Patch for a dict body, so the patch names its content
    type (the client's type stub lacks ``_content_type``).
    """

    def __init__(self, api: CustomObjectsApi, namespace: str, name: str, *,
                 version: str = CAPI_VERSION) -> None:
        self._api = api
        self._where = (CAPI_GROUP, version, namespace, CAPI_PLURAL, name)
        self.what = f"MachineDeployment {namespace}/{name}"

    async def current(self) -> NodeTarget:
        return (await _call_read(self)).target

    async def scale(self, desired: int, *, reason: str,
                    may_write: MayWrite = _always) -> ScaleResult:
        return await _scale(self, desired, reason, may_write)

    async def read(self) -> _Snapshot:
        obj = await _call(self.what, "get", self._api.get_namespaced_custom_object(*self._where))
        scale = await _call(self.what, "get scale",
                            self._api.get_namespaced_custom_object_scale(*self._where))
        annotations = obj.get("metadata", {}).get("annotations") or {}
        lo, hi = _bounds(annotations, self.what)
        ready = (obj.get("status") or {}).get("readyReplicas")
        target = NodeTarget(_replicas(scale), lo, hi,
                            int(ready) if isinstance(ready, int) else None)
        return _Snapshot(target, _resource_version(scale))

    async def write(self, replicas: int, resource_version: str | None) -> None:
        call = self._api.patch_namespaced_custom_object_scale(
            *self._where, _patch_body(replicas, resource_version),
            _content_type=MERGE_PATCH)  # type: ignore[call-arg]
        await _call(self.what, "patch scale", call)


class PlaceholderActuator:
    """Scale a Deployment of GPU-requesting placeholder pods within operator-given bounds."""

    def __init__(self, api: AppsV1Api, namespace: str, name: str, *,
                 min: int | None = None, max: int | None = None) -> None:
        if min is not None and max is not None and min > max:
            raise ValueError(f"placeholder bounds: min {min} > max {max}")
        self._api = api
        self._namespace = namespace
        self._name = name
        self._min = min
        self._max = max
        self.what = f"placeholder Deployment {namespace}/{name}"

    async def current(self) -> NodeTarget:
        return (await _call_read(self)).target

    async def scale(self, desired: int, *, reason: str,
                    may_write: MayWrite = _always) -> ScaleResult:
        return await _scale(self, desired, reason, may_write)

    async def read(self) -> _Snapshot:
        call = self._api.read_namespaced_deployment_scale(self._name, self._namespace)
        scale = await _call(self.what, "get scale", call)
        target = NodeTarget(_replicas(scale), self._min, self._max)
        return _Snapshot(target, _resource_version(scale))

    async def write(self, replicas: int, resource_version: str | None) -> None:
        call = self._api.patch_namespaced_deployment_scale(
            self._name, self._namespace, _patch_body(replicas, resource_version))
        await _call(self.what, "patch scale", call)


class DryRunActuator:
    """Changes nothing: remembers each plan in ``plans`` and says what it would have done."""

    def __init__(self, nodes_now: int = 0) -> None:
        self.nodes_now = nodes_now
        self.plans: list[tuple[int, str]] = []

    async def current(self) -> NodeTarget:
        return NodeTarget(self.nodes_now, None, None)

    async def scale(self, desired: int, *, reason: str,
                    may_write: MayWrite = _always) -> ScaleResult:
        self.plans.append((desired, reason))
        message = f"dry-run: would scale nodes from {self.nodes_now} to {desired}: {reason}"
        return ScaleResult(False, self.nodes_now, desired, None, message)
