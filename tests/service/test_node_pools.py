"""Node pools acted on: plans summed per pool, the guard, the leader, dry-run, Events."""

from __future__ import annotations

import datetime
import json

import pytest
from kubernetes_asyncio.client import ApiClient

from scaler.config.load import ConfigError, parse_config
from scaler.config.node_pools import NodePool
from scaler.model.predictive import Plan
from scaler.service.node_pools import FixedLeadership, NodePoolController
from scaler.service.service import ScalerService
from tests.clock import ManualClock
from tests.kube_api import MD, NS, add_md, md_replicas, scale_patches

URL = "http://127.0.0.1:9/metrics"


def plan(nodes: int) -> Plan:
    return Plan(replicas=nodes * 8, nodes=nodes, active=True, need_now=1, need_ahead=nodes * 8,
                forecast_mean=0.0, forecast_upper=0.0, reason="test")


def controller(service: ScalerService, api: ApiClient | None, *, leader: bool = True,
               actuator: str = "machinedeployment",
               cooldown_down_s: float = 600) -> NodePoolController:
    pool = NodePool("h100", actuator, NS, "pool", cooldown_up_s=0,
                    cooldown_down_s=cooldown_down_s)
    return NodePoolController([pool], workloads=lambda: service.registry, api=api,
                              leadership=FixedLeadership(leader), clock=service.clock,
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
    ("node_pools: {pools: {h100: {actuator: placeholder, namespace: a, target: b, "
     "max_nodes: 4, namespaces: [llm]}}}",
     "node_pools.lease_namespace: required when a pool acts (h100)"),
    ("node_pools: {lease_namespace: keda, pools: {h100: {actuator: placeholder, namespace: a, "
     "target: b, namespaces: [llm]}}}",
     "node_pools.pools.h100.max_nodes: required for the placeholder actuator: the most nodes any"
     " workload may make the scaler ask of the pool"),
    ("node_pools: {lease_namespace: keda, pools: {h100: {actuator: machinedeployment, "
     "namespace: a, target: b, max_nodes: 4}}}",
     "node_pools.pools.h100.namespaces: required for the machinedeployment actuator: list the"
     " namespaces whose workloads may count toward the pool"),
    ("node_pools: {pools: {h100: {namespaces: llm}}}",
     "node_pools.pools.h100.namespaces: 'llm' is not a list of namespace names"),
    ("node_pools: {pools: {h100: {namespaces: [Team_A]}}}",
     "node_pools.pools.h100.namespaces: ['Team_A'] is not a list of namespace names"),
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
    h100: {actuator: machinedeployment, namespace: capi, target: h100-md, cooldown_up_s: 0,
           max_nodes: 16, namespaces: [llm, llm-batch, llm]}
""")
    (pool,) = config.node_pools.pools
    assert (pool.name, pool.actuator, pool.target, pool.cooldown_up_s, pool.max_nodes) == (
        "h100", "machinedeployment", "h100-md", 0.0, 16)
    assert pool.namespaces == ("llm", "llm-batch")


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
    h100: {{actuator: machinedeployment, namespace: {NS}, target: pool, max_nodes: 8,
           namespaces: [llm]}}
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
                           leadership=FixedLeadership(True), clock=service.clock,
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
    await controller(service, api, actuator="placeholder", cooldown_down_s=0).round()
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


# --- what the Lease remembers: the warm-up and the cooldowns across restarts ---------------------


def remembered(clock: ManualClock, **pools: dict[str, object]) -> dict[str, str]:
    from scaler.service.pool_memory import ANNOTATION

    return {ANNOTATION: json.dumps(pools)}


def utc(wall_s: float) -> str:
    return datetime.datetime.fromtimestamp(wall_s, tz=datetime.UTC).isoformat()


def leader_with(service: ScalerService, api: ApiClient, memory: dict[str, str], *,
                cooldown_up_s: float = 0, cooldown_down_s: float = 600,
                ) -> tuple[NodePoolController, FixedLeadership]:
    lease = FixedLeadership(True, term_annotations=memory)
    pool = NodePool("h100", "machinedeployment", NS, "pool", cooldown_up_s=cooldown_up_s,
                    cooldown_down_s=cooldown_down_s, max_nodes=40, namespaces=("llm",))
    return NodePoolController([pool], workloads=lambda: service.registry, api=api,
                              leadership=lease, clock=service.clock,
                              registry=service.telemetry.registry), lease


async def test_the_leader_remembers_the_last_change_and_who_counts_in_the_lease(
        service, api, server):
    from scaler.service.pool_memory import ANNOTATION

    add_md(server, 2)
    with_plans(service, 3, 2)
    pools, lease = leader_with(service, api, {})
    await pools.round()
    assert json.loads(lease.written[ANNOTATION]) == {"h100": {
        "lastChange": utc(service.clock.wall()).replace("+00:00", "Z"),
        "workloads": ["llm/model-0/desired-replicas", "llm/model-1/desired-replicas"]}}


async def test_a_scale_up_cooldown_goes_on_across_a_restart(service, api, server):
    add_md(server, 2)
    with_plans(service, 6)
    memory = remembered(service.clock, h100={"lastChange": utc(service.clock.wall() - 100),
                                             "workloads": ["llm/model-0/desired-replicas"]})
    pools, _ = leader_with(service, api, memory, cooldown_up_s=300)
    await pools.round()
    assert md_replicas(server) == 2  # 100 s since the last change < 300 s
    service.clock.advance(200)
    await pools.round()
    assert md_replicas(server) == 6


async def test_an_unreadable_memory_keeps_the_warm_up_at_its_longest(service, api, server):
    from scaler.service.pool_memory import ANNOTATION

    add_md(server, 10)
    with_plans(service, 2)
    pools, lease = leader_with(service, api, {ANNOTATION: "{not json"})
    await pools.round()
    service.clock.advance(1199)  # everyone it knows of is back, but it cannot know them all
    await pools.round()
    assert md_replicas(server) == 10
    service.clock.advance(1)
    await pools.round()
    assert md_replicas(server) == 2
    assert json.loads(lease.written[ANNOTATION])["h100"]["workloads"] == [
        "llm/model-0/desired-replicas"]


async def test_a_warm_up_ends_after_one_cooldown_once_everyone_is_back(service, api, server):
    add_md(server, 10)
    with_plans(service, 2, 3)
    memory = remembered(service.clock, h100={"workloads": [
        "llm/model-0/desired-replicas", "llm/model-1/desired-replicas"]})
    pools, _ = leader_with(service, api, memory)
    await pools.round()
    service.clock.advance(599)
    await pools.round()
    assert md_replicas(server) == 10
    service.clock.advance(1)
    await pools.round()
    assert md_replicas(server) == 5


async def test_the_lease_taken_in_the_middle_of_a_round_is_acted_on_from_the_next(
        service, api, server):
    """A replica that takes the Lease while a round runs on the previous term's state (its
    start's warm-up, long over) must not shrink the pool in that round."""
    add_md(server, 10)
    with_plans(service, 2)
    lease = FixedLeadership(False, term=0)
    pool = NodePool("h100", "machinedeployment", NS, "pool", cooldown_up_s=0,
                    cooldown_down_s=600, max_nodes=40, namespaces=("llm",))

    def workloads():  # read in the round, after it began: the Lease is taken meanwhile
        if service.clock.monotonic() > 5000:
            lease.leader, lease.term = True, 1
        return service.registry

    pools = NodePoolController([pool], workloads=workloads, api=api, leadership=lease,
                               clock=service.clock, registry=service.telemetry.registry)
    await pools.round()  # term 0 begins: a standby's warm-up
    service.clock.advance(5000)  # long over
    await pools.round()  # the Lease is taken during this round
    assert md_replicas(server) == 10 and actions(service, "not_leader") == 1
    await pools.round()  # the new term: its warm-up holds
    assert md_replicas(server) == 10 and actions(service, "held") == 2  # (1: term 0's)


async def test_a_workload_from_a_namespace_the_pool_does_not_list_is_never_counted(
        service, api, server):
    add_md(server, 2)
    service.resolve("team-x", "sneaky", {"endpoints": URL, "nodePool": "h100"}).plan = plan(30)
    pools, _ = leader_with(service, api, {})  # the service's config has no pools: no refusal
    await pools.round()
    assert md_replicas(server) == 2 and not scale_patches(server)


def test_a_dry_run_pool_counts_any_namespace_unless_it_lists_some():
    from scaler.keda.metadata import MetadataError

    config = parse_config("node_pools: {pools: {open: {}, listed: {namespaces: [llm]}}}\n")
    svc = ScalerService(config, clock=ManualClock(), background=False)
    assert svc.spec_of("team-x", "m", {"endpoints": URL, "nodePool": "open"}).node_pool == "open"
    assert svc.spec_of("llm", "m", {"endpoints": URL, "nodePool": "listed"}).node_pool == "listed"
    with pytest.raises(MetadataError, match="namespace 'team-x' may not count toward it"):
        svc.spec_of("team-x", "m", {"endpoints": URL, "nodePool": "listed"})
    assert svc.lookup("llm", "m", {"endpoints": URL, "nodePool": "listed"}) is None


async def test_a_conflict_ends_the_round_without_a_retry(service, api, server):
    """Someone wrote between our read and our write (maybe the new leader): its count stands,
    and the pools after this one wait for the next round."""
    from tests.kube_api import DEPLOYMENTS, MD

    add_md(server, 2)
    server.objects[DEPLOYMENTS, NS, "burst"] = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "burst", "namespace": NS, "resourceVersion": server.bump()},
        "spec": {"replicas": 0}}
    for pool, nodes in (("h100", 6), ("burst", 2)):
        service.resolve("llm", f"model-{pool}", {"endpoints": f"{URL}?{pool}",
                                                 "nodePool": pool}).plan = plan(nodes)
    pools = [NodePool("h100", "machinedeployment", NS, "pool", cooldown_up_s=0),
             NodePool("burst", "placeholder", NS, "burst", cooldown_up_s=0)]
    c = NodePoolController(pools, workloads=lambda: service.registry, api=api,
                           leadership=FixedLeadership(True), clock=service.clock,
                           registry=service.telemetry.registry)

    def another_writer(kube):
        kube.objects[MD, NS, "pool"].patch({"metadata": {"resourceVersion": kube.bump()},
                                            "spec": {"replicas": 3}})

    server.meddle(another_writer)
    await c.round()
    assert md_replicas(server) == 3 and len(scale_patches(server)) == 1
    assert server.objects[DEPLOYMENTS, NS, "burst"]["spec"]["replicas"] == 0  # next round
    assert actions(service, "conflict") == 1
    await c.round()
    assert md_replicas(server) == 6
    assert server.objects[DEPLOYMENTS, NS, "burst"]["spec"]["replicas"] == 1  # 1 node in use
