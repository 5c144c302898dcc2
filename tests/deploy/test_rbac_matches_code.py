"""The RBAC in deploy/base/rbac.yaml grants exactly what the code asks the API server for.

Every feature that talks to Kubernetes runs here, with the real client, against one recording
kmock API server (``ApiServer`` from tests/adapters/kubernetes/test_nodes.py): pod discovery of a
Deployment, a StatefulSet and a bare label selector (LIST + WATCH, the target's GET and its
``scale`` subresource), both node actuators through the node pool controller (MachineDeployment
GET, its scale GET + PATCH; the placeholder Deployment's scale GET + PATCH; an Event each), the
leader election Lease (GET, create, renew, release) and the ConfigRejected Event. Each recorded
request becomes (API group, resource[/subresource], verb) as the API server's authorizer sees
it, and that set must equal the (group, resource, verb) triples of the ClusterRole and Role:
nothing used without a grant, nothing granted without a use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml
from kubernetes_asyncio.client import ApiClient, CoordinationV1Api

from adapters.kubernetes.discovery import PodDiscovery
from adapters.kubernetes.leader import LeaderElector
from adapters.kubernetes.pods import WorkloadTarget
from scaler.config.node_pools import NodePool
from scaler.model.predictive import Plan
from scaler.service.config_watch import CONFIGMAP_ENV, ConfigWatcher
from scaler.service.node_pools import NodePoolController
from scaler.service.service import ScalerService
from tests.clock import ManualClock
from tests.conftest import make_config, wait_until
from tests.kube_api import ApiServer, add_md, md_replicas

RBAC = Path(__file__).resolve().parents[2] / "deploy" / "base" / "rbac.yaml"
NS = "gpu"
PODS = kmock.resource("", "v1", "pods")
DEPLOYMENTS = kmock.resource("apps", "v1", "deployments")
STATEFULSETS = kmock.resource("apps", "v1", "statefulsets")
URL = "http://127.0.0.1:9/metrics"

Grant = tuple[str, str, str]  # (API group, resource[/subresource], verb)



# --- what the code asks for -------------------------------------------------------------------


def grant_of(method: str, path: str, params: dict[str, str]) -> Grant:
    """(group, resource[/subresource], verb) of one API request, as RBAC authorizes it."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"]:
        group, rest = parts[1], parts[3:]
    else:
        raise AssertionError(f"not a Kubernetes API path: {path}")
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        rest = rest[2:]  # namespaced resources; /namespaces/<name> alone is the namespace
    resource, name, sub = [*rest, None, None][:3]
    assert resource is not None, path
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method)
    if method == "GET":
        verb = "watch" if params.get("watch") in ("true", "1") else "get" if name else "list"
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    assert verb is not None, (method, path)
    return group, f"{resource}/{sub}" if sub else resource, verb


@pytest.mark.parametrize(("method", "path", "params", "grant"), [
    ("GET", "/api/v1/namespaces/llm/pods", {}, ("", "pods", "list")),
    ("GET", "/api/v1/namespaces/llm/pods", {"watch": "true"}, ("", "pods", "watch")),
    ("GET", "/api/v1/namespaces/llm/pods/a", {}, ("", "pods", "get")),
    ("GET", "/apis/apps/v1/namespaces/llm/deployments/a/scale", {}, ("apps", "deployments/scale",
                                                                     "get")),
    ("PATCH", "/apis/cluster.x-k8s.io/v1beta1/namespaces/c/machinedeployments/m/scale", {},
     ("cluster.x-k8s.io", "machinedeployments/scale", "patch")),
    ("POST", "/api/v1/namespaces/llm/events", {}, ("", "events", "create")),
    ("PUT", "/apis/coordination.k8s.io/v1/namespaces/s/leases/l", {},
     ("coordination.k8s.io", "leases", "update")),
    ("GET", "/api/v1/nodes", {}, ("", "nodes", "list")),
])
def test_requests_map_to_rbac_verbs(method: str, path: str, params: dict[str, str],
                                    grant: Grant) -> None:
    assert grant_of(method, path, params) == grant


def granted() -> set[Grant]:
    """Every (group, resource, verb) the scaler's ClusterRole and Role grant."""
    grants: set[Grant] = set()
    for doc in yaml.safe_load_all(RBAC.read_text()):
        if not doc or doc.get("kind") not in ("ClusterRole", "Role"):
            continue
        for rule in doc.get("rules") or []:
            assert not rule.get("resourceNames"), rule  # not modelled here: would need names
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        assert "*" not in (group, resource, verb), f"wildcard in {rule}"
                        grants.add((group, resource, verb))
    return grants


def used(requests: Iterable[kmock.Request]) -> set[Grant]:
    return {grant_of(r.method.value, r.url.path, dict(r.params)) for r in requests}


# --- every feature, against one recording server ------------------------------------------------


def add_workload(server: ApiServer, resource: Any, name: str, replicas: int) -> None:
    server.objects[resource, NS, name] = {
        "metadata": {"name": name, "namespace": NS, "resourceVersion": server.bump()},
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


async def scale_node_pools(server: ApiServer, api: ApiClient) -> None:
    """Both actuators act once as the leader: scale reads and patches, an Event each."""
    add_md(server, 2)
    add_workload(server, DEPLOYMENTS, "gpu-placeholder", 1)
    service = ScalerService(make_config(), clock=ManualClock(), background=False, kube_api=api)
    await service.start()
    try:
        for pool in ("md", "ph"):
            service.resolve("llm", f"model-{pool}",
                            {"endpoints": URL, "nodePool": pool}).plan = plan(5)
        pools = [NodePool("md", "machinedeployment", NS, "pool", cooldown_up_s=0),
                 NodePool("ph", "placeholder", NS, "gpu-placeholder", cooldown_up_s=0)]
        controller = NodePoolController(
            pools, workloads=lambda: service.registry, api=api, is_leader=lambda: True,
            clock=service.clock, registry=service.telemetry.registry)
        await controller.round()
        assert md_replicas(server) == 5
        assert server.objects[DEPLOYMENTS, NS, "gpu-placeholder"]["spec"]["replicas"] == 4
        assert len([r for r in server if r.method == "POST"]) == 2  # NodeCapacityPlanned
    finally:
        await service.stop()


async def elect(api: ApiClient) -> None:
    """Acquire (the Lease is absent: create), renew (update), release on stop (update)."""
    clock = ManualClock()
    elector = LeaderElector(CoordinationV1Api(api), "llm-scaler", "llm-predictive-scaler",
                            "scaler-a", clock=clock.wall)
    assert await elector.round()
    clock.advance(2)
    assert await elector.round()
    await elector.stop()


async def reject_a_config(server: ApiServer, api: ApiClient, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    service = ScalerService(make_config(), clock=ManualClock(), background=False, kube_api=api)
    await service.start()
    try:
        monkeypatch.setenv(CONFIGMAP_ENV, "llm-scaler/llm-predictive-scaler")
        posts = len([r for r in server if r.method == "POST"])
        path = tmp_path / "config.yaml"
        path.write_text("scrape: {interval_s: nope}\n")
        assert ConfigWatcher(path, service).check() == "rejected"
        await wait_until(lambda: len([r for r in server if r.method == "POST"]) > posts)
    finally:
        await service.stop()


async def test_rbac_grants_exactly_what_the_code_uses(
        server: ApiServer, api: ApiClient, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server.resources["v1/pods"] = {}  # an empty namespace lists (not 404s)
    add_workload(server, DEPLOYMENTS, "llama", 2)
    add_workload(server, STATEFULSETS, "db", 2)
    for target in (WorkloadTarget(NS, "Deployment", "llama", None),
                   WorkloadTarget(NS, "StatefulSet", "db", None),
                   WorkloadTarget(NS, "selector", "", "app=nvidia-dcgm-exporter", 9400)):
        await discover(server, api, target)
    await scale_node_pools(server, api)
    await elect(api)
    await reject_a_config(server, api, tmp_path, monkeypatch)

    requests = list(server)
    assert all(r.method == "GET" or r.url.path.endswith(("/scale", "/events", "/leases",
                                                          "/llm-predictive-scaler"))
               for r in requests), "a write the scenarios above did not intend"
    needed, rules = used(requests), granted()
    missing, unused = sorted(needed - rules), sorted(rules - needed)
    assert not missing and not unused, (
        "deploy/base/rbac.yaml and the code disagree:\n"
        f"  used by the code but not granted (add): {missing}\n"
        f"  granted but never used (remove): {unused}")


def test_the_lease_rule_is_namespaced_and_the_rest_cluster_wide() -> None:
    """Leader election only touches the scaler's own namespace: its rule is in the Role."""
    kinds: dict[str, set[str]] = {}
    for doc in yaml.safe_load_all(RBAC.read_text()):
        if doc and doc.get("kind") in ("ClusterRole", "Role"):
            for rule in doc["rules"]:
                for resource in rule["resources"]:
                    kinds.setdefault(resource, set()).add(doc["kind"])
    assert kinds.pop("leases") == {"Role"}
    assert all(found == {"ClusterRole"} for found in kinds.values()), kinds
