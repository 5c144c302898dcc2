"""A Kubernetes API server for tests: kmock over real HTTP, plus what kmock 0.8 lacks.

kmock's emulator keeps objects and answers LIST/WATCH/GET/POST/PATCH; this subclass adds
resourceVersions, 409 conflicts on a stale resourceVersion, and the ``scale`` subresource of
Deployments, StatefulSets and MachineDeployments, so actuators and leader election meet the
API's real rules. The ``server`` and ``api`` fixtures (tests/conftest.py) start one.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp.web
import kmock

MD = kmock.resource("cluster.x-k8s.io", "v1beta1", "machinedeployments")
DEPLOYMENTS = kmock.resource("apps", "v1", "deployments")
EVENTS = kmock.resource("", "v1", "events")
NS = "gpu"


def object_key(request: kmock.Request) -> tuple[kmock.resource, str | None, str] | None:
    """Where kmock stores the object a request names; None for collections."""
    if request.resource is None or request.name is None:
        return None
    return request.resource, request.namespace, request.name


class ApiServer(kmock.KubernetesEmulator):
    """kmock's emulator with resourceVersion preconditions, the scale subresource and PUT."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.versions = itertools.count(100)
        self.meddlers: list[Callable[[ApiServer], None]] = []
        self.faults: list[kmock.KubernetesError] = []
        self.preconditions: list[str | None] = []  # resourceVersion sent with each write
        self.gate: Callable[[kmock.Request], Awaitable[None]] | None = None  # before handling
        self.keep_requests = True  # False: each request leaves the log once answered
        self._carried: set[asyncio.Future[aiohttp.web.StreamResponse]] = set()
        (self.fallback ** 1)[kmock.subresource("scale")] << self._serve_scale

    def meddle(self, change: Callable[[ApiServer], None]) -> None:
        self.meddlers.append(change)

    def fail_writes(self, status: int, reason: str, times: int = 1) -> None:
        self.faults += [kmock.KubernetesError(status=status, reason=reason)] * times

    def bump(self) -> str:
        return str(next(self.versions))

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if self.gate is None:
            return await self._logged(request)
        # A request the gate holds is carried out even if its client hangs up meanwhile, as
        # the API server carries out a write it has accepted.
        work = asyncio.ensure_future(self._logged(request))
        self._carried.add(work)
        work.add_done_callback(self._carried.discard)
        work.add_done_callback(lambda done: done.cancelled() or done.exception())  # answered
        return await asyncio.shield(work)

    async def _logged(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        try:
            if self.gate is not None:  # a test's hand on each request as it arrives (may hold it)
                await self.gate(request)
            return await self._serve(request)
        finally:
            if not self.keep_requests:  # kmock matches each request against the whole log:
                self._requests.remove(request)  # long runs would take quadratic time

    async def _serve(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if request.resource is not None and request.method in {"PATCH", "PUT", "POST"}:
            self._precondition(request)
            if request.method == "PUT":
                return self._replace(request)
        return await super()._handle(request)

    def _precondition(self, request: kmock.Request) -> None:
        while self.meddlers:
            self.meddlers.pop(0)(self)
        if self.faults:
            raise self.faults.pop(0)
        meta = request.data.setdefault("metadata", {})
        sent = meta.get("resourceVersion")
        self.preconditions.append(sent)
        key = object_key(request)
        if key is not None and key in self.objects and not self.objects[key].deleted:
            stored = self.objects[key].get("metadata", {}).get("resourceVersion")
            if sent is not None and sent != stored:
                raise kmock.KubernetesError(
                    status=409, reason="Conflict",
                    message="the object has been modified; please apply your changes to the"
                            " latest version and try again")
        meta["resourceVersion"] = self.bump()

    def _replace(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        key = object_key(request)
        if key is None or key not in self.objects or self.objects[key].deleted:
            raise kmock.KubernetesObjectNotFoundError()
        self.objects[key].create(request.data)
        return aiohttp.web.json_response(self.objects[key].raw)

    def _serve_scale(self, request: kmock.Request) -> dict[str, Any]:
        key = object_key(request)
        assert key is not None, "scale of what?"
        obj = self.objects[key]
        replicas = obj["spec"]["replicas"]
        meta = obj["metadata"]
        return {"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                             "resourceVersion": meta["resourceVersion"]},
                "spec": {"replicas": replicas}, "status": {"replicas": replicas}}


def add_md(server: ApiServer, replicas: int, **annotations: str) -> None:
    meta = {"name": "pool", "namespace": NS, "resourceVersion": server.bump(),
            "annotations": annotations}
    server.objects[MD, NS, "pool"] = {"apiVersion": "cluster.x-k8s.io/v1beta1",
                                      "kind": "MachineDeployment", "metadata": meta,
                                      "spec": {"replicas": replicas, "clusterName": "c"}}


def md_replicas(server: ApiServer) -> int:
    return int(server.objects[MD, NS, "pool"]["spec"]["replicas"])


def scale_patches(server: ApiServer) -> list[kmock.Request]:
    return [r for r in server if r.method == "PATCH" and r.subresource == "scale"]
