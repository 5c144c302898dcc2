"""The scaler's RBAC grants exactly what the code asks the API server for, and only where.

Every feature that talks to Kubernetes runs here, with the real client, against one recording
kmock API server (``ApiServer`` from tests/kube_api.py), on the namespaces and names the deploy
manifests configure: pod discovery of a Deployment, a StatefulSet and the config's
``gpu.selector`` (LIST + WATCH, the target's GET and its ``scale`` subresource); the example
overlay's MachineDeployment pool and the placeholder example's pool through the node pool
controller (MachineDeployment GET, its scale GET + PATCH; the placeholder Deployment's scale GET
+ PATCH; an Event each in the pool's namespace); the overlay config's leader-election Lease
(GET, create, renew, release); and the ConfigRejected Event on the overlay's ConfigMap.

Each recorded request becomes what the API server's authorizer sees (API group,
resource[/subresource], verb, namespace, name) and is checked against the rules of the rendered
overlay and of the placeholder example, as RBAC applies them: a ClusterRole's rule in every
namespace, a Role's only in its own, a rule with ``resourceNames`` only for a request naming one
of them. Nothing used without a grant, nothing granted without a use; and, for the base, the
overlay and the examples alike, no write is granted cluster-wide, every write but ``create``
(which cannot be limited by name) names its objects, and writes go only to the namespaces and
objects the config names.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import kmock
import pytest
from kubernetes_asyncio.client import ApiClient, CoordinationV1Api

from adapters.kubernetes.discovery import PodDiscovery
from adapters.kubernetes.leader import LeaderElector
from adapters.kubernetes.pods import WorkloadTarget
from scaler.config.node_pools import NodePool
from scaler.config.settings import ServiceConfig
from scaler.model.predictive import Plan
from scaler.service.config_watch import CONFIGMAP_ENV, ConfigWatcher
from scaler.service.node_pools import FixedLeadership, NodePoolController
from scaler.service.service import ScalerService
from tests.clock import ManualClock
from tests.conftest import make_config, wait_until
from tests.deploy import manifests as m
from tests.deploy.manifests import Obj
from tests.kube_api import ApiServer

WORKLOADS_NS = "llm"  # a namespace of its own: pod discovery reads any namespace
PODS = kmock.resource("", "v1", "pods")
DEPLOYMENTS = kmock.resource("apps", "v1", "deployments")
STATEFULSETS = kmock.resource("apps", "v1", "statefulsets")
URL = "http://127.0.0.1:9/metrics"
READS = frozenset({"get", "list", "watch"})


# --- what the code asks for, and what RBAC grants -------------------------------------------


@dataclasses.dataclass(frozen=True)
class Request:
    """One API request as the authorizer sees it (namespace None: cluster scope)."""

    group: str
    resource: str  # resource[/subresource]
    verb: str
    namespace: str | None
    name: str | None


@dataclasses.dataclass(frozen=True)
class Rule:
    """One (group, resource, verb) of a ClusterRole (namespace None) or a Role."""

    role: str
    namespace: str | None
    group: str
    resource: str
    verb: str
    names: frozenset[str]  # resourceNames; empty: every object

    def allows(self, request: Request) -> bool:
        return ((self.group, self.resource, self.verb)
                == (request.group, request.resource, request.verb)
                and self.namespace in (None, request.namespace)
                and (not self.names or request.name in self.names))


def request_of(method: str, path: str, params: dict[str, str]) -> Request:
    """What RBAC authorizes for one API request."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"]:
        group, rest = parts[1], parts[3:]
    else:
        raise AssertionError(f"not a Kubernetes API path: {path}")
    namespace = None
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        namespace, rest = rest[1], rest[2:]  # /namespaces/<name> alone is the namespace
    resource, name, sub = [*rest, None, None][:3]
    assert resource is not None, path
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method)
    if method == "GET":
        verb = "watch" if params.get("watch") in ("true", "1") else "get" if name else "list"
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    assert verb is not None, (method, path)
    return Request(group, f"{resource}/{sub}" if sub else resource, verb, namespace, name)


@pytest.mark.parametrize(("method", "path", "params", "request_"), [
    ("GET", "/api/v1/namespaces/llm/pods", {}, Request("", "pods", "list", "llm", None)),
    ("GET", "/api/v1/namespaces/llm/pods", {"watch": "true"},
     Request("", "pods", "watch", "llm", None)),
    ("GET", "/api/v1/namespaces/llm/pods/a", {}, Request("", "pods", "get", "llm", "a")),
    ("GET", "/apis/apps/v1/namespaces/llm/deployments/a/scale", {},
     Request("apps", "deployments/scale", "get", "llm", "a")),
    ("PATCH", "/apis/cluster.x-k8s.io/v1beta1/namespaces/c/machinedeployments/m/scale", {},
     Request("cluster.x-k8s.io", "machinedeployments/scale", "patch", "c", "m")),
    ("POST", "/api/v1/namespaces/llm/events", {}, Request("", "events", "create", "llm", None)),
    ("PUT", "/apis/coordination.k8s.io/v1/namespaces/s/leases/l", {},
     Request("coordination.k8s.io", "leases", "update", "s", "l")),
    ("GET", "/api/v1/nodes", {}, Request("", "nodes", "list", None, None)),
])
def test_requests_map_to_what_rbac_authorizes(method: str, path: str, params: dict[str, str],
                                              request_: Request) -> None:
    assert request_of(method, path, params) == request_


def rules_of(objs: Iterable[Obj]) -> list[Rule]:
    """Every (group, resource, verb) the ClusterRoles and Roles among ``objs`` grant."""
    rules = []
    for doc in objs:
        if doc["kind"] not in ("ClusterRole", "Role"):
            continue
        meta = doc["metadata"]
        namespace = meta["namespace"] if doc["kind"] == "Role" else None
        role = f"{doc['kind']} {namespace + '/' if namespace else ''}{meta['name']}"
        for rule in doc.get("rules") or []:
            assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule
            names = frozenset(rule.get("resourceNames") or ())
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        assert "*" not in (group, resource, verb), f"wildcard in {role}: {rule}"
                        rules.append(Rule(role, namespace, group, resource, verb, names))
    return rules


def granted() -> list[Rule]:
    """The rules of the example overlay (the scaler and its MachineDeployment pool) and of the
    placeholder example (its pool)."""
    return rules_of([*m.objects("overlay"), *m.example("placeholder.yaml")])


def recorded(server: ApiServer) -> list[Request]:
    return [request_of(r.method.value, r.url.path, dict(r.params)) for r in server]


# --- every feature, against one recording server ------------------------------------------------


def add_object(server: ApiServer, resource: Any, namespace: str, name: str,
               replicas: int) -> None:
    server.objects[resource, namespace, name] = {
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": server.bump()},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}}}


async def discover(server: ApiServer, api: ApiClient, target: WorkloadTarget) -> None:
    """One target's pod discovery until its watch is open, and its replica count."""
    discovery = PodDiscovery(api, target)
    watches = len([r for r in server if r.params.get("watch") == "true"])
    await discovery.start()
    try:
        async with asyncio.timeout(5):
            await discovery.synced.wait()
        await wait_until(lambda: len([r for r in server if r.params.get("watch") == "true"])
                         > watches)
        assert discovery.last_error is None, discovery.last_error
        replicas = await discovery.replicas()
        assert replicas == (None if target.kind == "selector" else 2)
    finally:
        await discovery.stop()


def plan(nodes: int) -> Plan:
    return Plan(replicas=nodes * 8, nodes=nodes, active=True, need_now=1, need_ahead=nodes * 8,
                forecast_mean=0.0, forecast_upper=0.0, reason="test")


def acting_pools() -> tuple[NodePool, NodePool]:
    """The overlay's MachineDeployment pool and the placeholder example's pool."""
    [md] = [p for p in m.config(m.objects("overlay")).node_pools.pools
            if p.actuator == "machinedeployment"]
    [placeholder] = m.placeholder_config().node_pools.pools
    assert placeholder.actuator == "placeholder"
    return md, placeholder


async def scale_node_pools(server: ApiServer, api: ApiClient) -> None:
    """Both actuators act once as the leader: scale reads and patches, an Event each."""
    md, placeholder = acting_pools()
    add_object(server, kmock.resource("cluster.x-k8s.io", md.api_version, "machinedeployments"),
               md.namespace, md.target, 2)
    add_object(server, DEPLOYMENTS, placeholder.namespace, placeholder.target, 1)
    service = ScalerService(make_config(), clock=ManualClock(), background=False, kube_api=api)
    await service.start()
    try:
        for pool in (md, placeholder):
            service.resolve(WORKLOADS_NS, f"model-{pool.name}",
                            {"endpoints": URL, "nodePool": pool.name}).plan = plan(5)
        controller = NodePoolController(
            [dataclasses.replace(pool, cooldown_up_s=0) for pool in (md, placeholder)],
            workloads=lambda: service.registry, api=api, leadership=FixedLeadership(True),
            clock=service.clock, registry=service.telemetry.registry)
        await controller.round()
        patched = {(r.namespace, r.name) for r in recorded(server) if r.verb == "patch"}
        assert patched == {(md.namespace, md.target), (placeholder.namespace, placeholder.target)}
        events = [r for r in recorded(server) if r.resource == "events"]
        assert {r.namespace for r in events} == {md.namespace, placeholder.namespace}
    finally:
        await service.stop()


async def elect(api: ApiClient, config: ServiceConfig) -> None:
    """Acquire (the Lease is absent: create), renew (update), release on stop (update)."""
    clock = ManualClock()
    elector = LeaderElector(CoordinationV1Api(api), config.node_pools.lease_namespace,
                            config.node_pools.lease_name, "scaler-a", clock=clock.wall)
    assert await elector.round()
    clock.advance(2)
    assert await elector.round()
    assert await elector.annotate({"llm-predictive-scaler/node-pools": "{}"})  # node pools' memory
    await elector.stop()


async def reject_a_config(server: ApiServer, api: ApiClient, configmap: str, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    service = ScalerService(make_config(), clock=ManualClock(), background=False, kube_api=api)
    await service.start()
    try:
        monkeypatch.setenv(CONFIGMAP_ENV, configmap)
        posts = len([r for r in server if r.method == "POST"])
        path = tmp_path / "config.yaml"
        path.write_text("scrape: {interval_s: nope}\n")
        assert ConfigWatcher(path, service).check() == "rejected"
        await wait_until(lambda: len([r for r in server if r.method == "POST"]) > posts)
    finally:
        await service.stop()


async def test_rbac_grants_exactly_what_the_code_uses_where_it_uses_it(
        server: ApiServer, api: ApiClient, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    overlay = m.objects("overlay")
    config = m.config(overlay)
    configmap = m.one(overlay, "ConfigMap")["metadata"]
    server.resources["v1/pods"] = {}  # an empty namespace lists (not 404s)
    add_object(server, DEPLOYMENTS, WORKLOADS_NS, "llama", 2)
    add_object(server, STATEFULSETS, WORKLOADS_NS, "db", 2)
    for target in (WorkloadTarget(WORKLOADS_NS, "Deployment", "llama", None),
                   WorkloadTarget(WORKLOADS_NS, "StatefulSet", "db", None),
                   WorkloadTarget(config.gpu.namespace, "selector", "", config.gpu.selector,
                                  config.gpu.port)):
        await discover(server, api, target)
    await scale_node_pools(server, api)
    await elect(api, config)
    await reject_a_config(server, api, f"{configmap['namespace']}/{configmap['name']}",
                          tmp_path, monkeypatch)

    requests = recorded(server)
    assert all(r.verb in READS or r.resource in ("events", "leases")
               or (r.verb == "patch" and r.resource.endswith("/scale")) for r in requests), \
        "a write the scenarios above did not intend"
    rules = granted()
    denied = sorted({r for r in requests if not any(rule.allows(r) for rule in rules)},
                    key=str)
    unused = [rule for rule in rules if not any(rule.allows(r) for r in requests)]
    assert not denied and not unused, (
        "the RBAC (deploy/base/rbac.yaml, deploy/overlays/example/node-pool-rbac.yaml, "
        "deploy/examples/placeholder.yaml) and the code disagree:\n"
        f"  asked by the code but not granted there (add): {denied}\n"
        f"  granted but never used (remove): {unused}")


# --- scope: what may be written, and where ------------------------------------------------------


def write_places(source: str) -> dict[str, set[str]]:
    """Namespace -> names of the objects the config lets the scaler write there."""
    if source == "examples":
        configs, scaler_namespace = [m.placeholder_config()], None
    else:
        objs = m.objects(source)
        configs, scaler_namespace = [m.config(objs)], m.deployment(objs)["metadata"]["namespace"]
    places: dict[str, set[str]] = {}
    for config in configs:
        pools = config.node_pools
        if scaler_namespace is not None:
            assert pools.lease_namespace == scaler_namespace, "the Lease lives with the scaler"
            places.setdefault(scaler_namespace, set()).add(pools.lease_name)
        for pool in pools.pools:
            if pool.actuator != "dry-run":
                places.setdefault(pool.namespace, set()).add(pool.target)
    return places


def writes(rules: Iterable[Rule]) -> Iterator[Rule]:
    return (rule for rule in rules if rule.verb not in READS)


@pytest.mark.parametrize("source", ["base", "overlay", "examples"])
def test_no_write_is_cluster_wide(source: str) -> None:
    cluster_wide = [rule for rule in writes(rules_of(m.objects(source)))
                    if rule.namespace is None]
    assert not cluster_wide, f"writes granted in every namespace: {cluster_wide}"


@pytest.mark.parametrize("source", ["base", "overlay", "examples"])
def test_writes_name_the_objects_the_config_names(source: str) -> None:
    """Each write is in the scaler's namespace (its Lease) or a pool's, limited to that Lease
    or the pool's target; only `create` (never limited by name) names no object."""
    places = write_places(source)
    problems = []
    for rule in writes(rules_of(m.objects(source))):
        if rule.namespace not in places:
            problems.append(f"{rule}: not a namespace the config writes to ({sorted(places)})")
        elif rule.verb != "create" and not rule.names:
            problems.append(f"{rule}: a write to every object of the namespace")
        elif not rule.names <= places[rule.namespace]:
            problems.append(f"{rule}: names objects the config does not "
                            f"({sorted(places[rule.namespace])})")
    assert not problems, "\n".join(problems)
