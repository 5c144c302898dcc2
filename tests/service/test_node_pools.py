"""Node pools acted on: plans summed per pool, the guard, the leader, dry-run, Events."""

from __future__ import annotations

import pytest
from kubernetes_asyncio.client import ApiClient

from scaler.config.load import ConfigError, parse_config
from scaler.config.node_pools import NodePool
from scaler.model.predictive import Plan
from scaler.service.node_pools import NodePoolController
from scaler.service.service import ScalerService
from tests.clock import ManualClock
from tests.kube_api import MD, NS, add_md, md_replicas, scale_patches

URL = "http://127.0.0.1:9/metrics"


def plan(nodes: int) -> Plan:
    return Plan(replicas=nodes * 8, nodes=nodes, active=True, need_now=1, need_ahead=nodes * 8,
                forecast_mean=0.0, forecast_upper=0.0, reason="test")


def controller(service: ScalerService, api: ApiClient | None, *, leader: bool = True,
               actuator: str = "machinedeployment") -> NodePoolController:
    pool = NodePool("h100", actuator, NS, "pool", cooldown_up_s=0, cooldown_down_s=600)
    return NodePoolController([pool], workloads=lambda: service.registry, api=api,
                              is_leader=lambda: leader, clock=service.clock,
                              registry=service.telemetry.registry)


def actions(service: ScalerService, result: str) -> float | None:
    return service.telemetry.registry.get_sample_value(
        "scaler_node_pool_actions_total", {"pool": "h100", "result": result})


def with_plans(service: ScalerService, *nodes: int) -> None:
    for i, n in enumerate(nodes):
        workload = service.resolve("llm", f"model-{i}", {"endpoints": f"{URL}?{i}",
                                                         "nodePool": "h100"})
        workload.plan = plan(n)


async def test_the_leader_scales_the_machinedeployment_to_the_summed_plans(
        service, api, server):
    add_md(server, 2)
    with_plans(service, 3, 2)
    c = controller(service, api)
    await c.round()
    assert md_replicas(server) == 5
    [event] = [r for r in server if r.method == "POST"]
    assert event.url.path == f"/api/v1/namespaces/{NS}/events"
    assert event.data["reason"] == "NodeCapacityPlanned"
    assert event.data["involvedObject"]["kind"] == "MachineDeployment"
    assert "2 -> 5" in event.data["message"]
    assert actions(service, "scaled") == 1


async def test_no_shrink_within_the_cooldown(service, api, server):
    add_md(server, 2)
    with_plans(service, 4)
    c = controller(service, api)
    await c.round()
    (workload,) = service.registry
    workload.plan = plan(1)
    await c.round()
    assert md_replicas(server) == 4  # 600 s scale-down cooldown since the last change
    assert actions(service, "held") == 1


async def test_only_the_leader_acts(service, api, server):
    add_md(server, 2)
    with_plans(service, 6)
    c = controller(service, api, leader=False)
    await c.round()
    assert md_replicas(server) == 2 and not scale_patches(server)
    assert actions(service, "not_leader") == 1


async def test_dry_run_reports_and_changes_nothing(service):
    with_plans(service, 3)
    c = controller(service, None, actuator="dry-run")
    await c.round()
    assert service.telemetry.registry.get_sample_value(
        "scaler_node_pool_desired_nodes", {"pool": "h100"}) == 3
    assert actions(service, "dry_run") == 1


async def test_a_pool_no_workload_names_is_left_alone(service, api, server):
    add_md(server, 2)
    service.resolve("llm", "model", {"endpoints": URL}).plan = plan(9)
    await controller(service, api).round()
    assert md_replicas(server) == 2 and not scale_patches(server)


@pytest.mark.parametrize(("text", "problem"), [
    ("node_pools: {pools: {h100: {actuator: terraform}}}", "actuator: 'terraform' is not one"),
    ("node_pools: {lease_namespace: keda, pools: {h100: {actuator: machinedeployment}}}",
     "node_pools.pools.h100.namespace: required for the machinedeployment actuator"),
    ("node_pools: {pools: {h100: {actuator: placeholder, namespace: a, target: b}}}",
     "node_pools.lease_namespace: required when a pool acts (h100)"),
    ("node_pools: {pools: {h100: {cooldown_up_s: -1}}}",
     "cooldown_up_s: -1 is out of range: must be >= 0"),
    ("node_pools: {interval: 5}", "node_pools.interval: unknown key"),
])
def test_bad_node_pools_name_the_key(text, problem):
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert any(problem in p for p in info.value.problems), info.value.problems


def test_a_good_node_pool_config():
    config = parse_config("""
node_pools:
  lease_namespace: keda
  pools:
    h100: {actuator: machinedeployment, namespace: capi, target: h100-md, cooldown_up_s: 0}
""")
    (pool,) = config.node_pools.pools
    assert (pool.name, pool.actuator, pool.target, pool.cooldown_up_s) == (
        "h100", "machinedeployment", "h100-md", 0.0)


async def test_no_shrink_while_machines_are_still_joining(service, api, server):
    add_md(server, 4)
    server.objects[MD, NS, "pool"]["status"] = {"readyReplicas": 2}
    with_plans(service, 1)
    await controller(service, api).round()
    assert md_replicas(server) == 4
    assert actions(service, "held") == 1
    nodes = {state: service.telemetry.registry.get_sample_value(
        "scaler_node_pool_nodes", {"pool": "h100", "state": state})
        for state in ("requested", "ready")}
    assert nodes == {"requested": 4, "ready": 2}


async def test_the_leader_gauge_follows_the_lease(server, api):
    from scaler.commands.serve import start_node_pools

    config = parse_config(f"""
node_pools:
  lease_namespace: {NS}
  pools:
    h100: {{actuator: machinedeployment, namespace: {NS}, target: pool}}
""")
    svc = ScalerService(config, clock=ManualClock(), background=False, kube_api=api)
    await svc.start()
    tasks, elector = start_node_pools(svc)
    try:
        assert elector is not None
        assert svc.telemetry.registry.get_sample_value("scaler_leader") == 0
        assert await elector.round()
        assert svc.telemetry.registry.get_sample_value("scaler_leader") == 1
    finally:
        for task in tasks:
            task.cancel()
        await svc.stop()


async def test_a_node_pool_the_config_does_not_have_is_bad_metadata():
    from scaler.keda.metadata import MetadataError

    config = parse_config("node_pools: {pools: {h100: {actuator: dry-run}}}\n")
    svc = ScalerService(config, clock=ManualClock(), background=False)
    with pytest.raises(MetadataError, match=r"'nodePool' has value 'h10': expected one of the "
                                            r"configured node_pools\.pools: h100"):
        svc.spec_for({"endpoints": URL, "nodePool": "h10"})
    assert svc.spec_for({"endpoints": URL, "nodePool": "h100"}).node_pool == "h100"


@pytest.mark.parametrize(("planned", "bounds", "asked"), [
    (9, {"max_nodes": 6}, 6),
    (1, {"min_nodes": 4}, 4),
    (5, {"min_nodes": 4, "max_nodes": 6}, 5),
])
async def test_a_pool_s_own_bounds_cap_what_is_asked(service, api, server, planned, bounds,
                                                     asked):
    add_md(server, 2)
    with_plans(service, planned)
    pool = NodePool("h100", "machinedeployment", NS, "pool", cooldown_up_s=0, **bounds)
    c = NodePoolController([pool], workloads=lambda: service.registry, api=api,
                           is_leader=lambda: True, clock=service.clock,
                           registry=service.telemetry.registry)
    await c.round()
    assert md_replicas(server) == asked


@pytest.mark.parametrize(("text", "problem"), [
    ("{min_nodes: 5, max_nodes: 2}", "min_nodes: 5 is greater than max_nodes (2)"),
    ("{max_nodes: 0}", "max_nodes: 0 is out of range: must be >= 1"),
    ("{min_nodes: -1}", "min_nodes: -1 is out of range: must be >= 0"),
    ("{api_version: v1alpha3}", "api_version: 'v1alpha3' is not one of: v1beta1, v1beta2"),
])
def test_bad_pool_bounds_and_versions_name_the_key(text, problem):
    with pytest.raises(ConfigError) as caught:
        parse_config(f"node_pools: {{pools: {{h100: {text}}}}}\n")
    assert any(problem in p for p in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(("pods", "placeholders"), [
    (5, 0),  # 3-GPU replicas, 2 to an 8-GPU node: 5 fill 3 nodes, the plan's 3
    (2, 2),  # 2 fill 1 node: 2 more held warm
])
async def test_placeholders_are_the_nodes_beyond_what_whole_replicas_fill(
        service, api, server, pods, placeholders):
    from tests.kube_api import DEPLOYMENTS

    server.objects[DEPLOYMENTS, NS, "pool"] = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "pool", "namespace": NS, "resourceVersion": server.bump()},
        "spec": {"replicas": 1}}
    workload = service.resolve("llm", "model", {
        "endpoints": ",".join(f"{URL}?{i}" for i in range(pods)), "nodePool": "h100",
        "gpusPerReplica": "3"})
    workload.plan = plan(3)
    await controller(service, api, actuator="placeholder").round()
    assert server.objects[DEPLOYMENTS, NS, "pool"]["spec"]["replicas"] == placeholders


async def test_a_held_decision_holds_its_nodes_in_the_pool(service, api, server):
    """Pods without data hold the replicas, and the nodes under them with them, also once the
    workload is UNAVAILABLE."""
    from scaler.model.reactive import Decision

    add_md(server, 3)
    with_plans(service, 1)
    (workload,) = service.registry
    workload.decision = Decision(24, True, "held: pods without fresh data", (), desired_nodes=3)
    workload.asked_nodes = 3  # as the service records after that decision
    pools = controller(service, api)
    await pools.round()
    assert md_replicas(server) == 3  # not the plan's 1
    workload.decision = None  # then UNAVAILABLE: the last ask stays
    await pools.round()
    assert md_replicas(server) == 3
