"""Node actuation across restarts and failovers: election and actuation run concurrently.

Each scaler instance is what ``scaler.commands.serve`` builds: a ``LeaderElector`` on the shared
Lease and a ``NodePoolController`` acting on a MachineDeployment, each a loop of its own, with
its own ScalerService (its own workloads: KEDA asked it about them) and its own API client, all
against one kmock API server. Time is virtual (``tests/virtual_time.py``): the loops run at
their own periods (elections every 2 s, node rounds every 7 s, instances started at odd
offsets), never in lock-step, and time moves only once every loop waits.

The unlucky operator: a rolling update (or a crash) while a workload's pods run on the pool but
the new instance has not heard of that workload yet; a leader whose requests stall (its link,
its API server) while another takes over.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import kmock
import pytest
from kubernetes_asyncio.client import ApiClient, Configuration, CoordinationV1Api
from prometheus_client import CollectorRegistry

from adapters.kubernetes.leader import LeaderElector
from scaler.config.node_pools import NodePool
from scaler.model.predictive import Plan
from scaler.service.node_pools import NodePoolController
from scaler.service.pool_memory import ANNOTATION
from scaler.service.service import ScalerService
from tests.conftest import make_config
from tests.kube_api import NS, ApiServer, add_md, md_replicas
from tests.virtual_time import REQUEST_HEADER, Network, VirtualTime

LEASE_NS, LEASE = "llm-scaler", "llm-predictive-scaler"
LEASE_DURATION_S, RENEW_DEADLINE_S, RETRY_PERIOD_S = 15.0, 10.0, 2.0
INTERVAL_S = 7.0  # node rounds: not a multiple of the election's period
COOLDOWN_DOWN_S = 120.0
URL = "http://127.0.0.1:9/metrics"


def plan(nodes: int) -> Plan:
    return Plan(replicas=nodes * 8, nodes=nodes, active=True, need_now=1, need_ahead=nodes * 8,
                forecast_mean=0.0, forecast_upper=0.0, reason="test")


@dataclass(frozen=True)
class Patch:
    who: str | None
    at: float
    replicas: int


@dataclass
class Instance:
    name: str
    client: ApiClient
    service: ScalerService
    elector: LeaderElector
    controller: NodePoolController

    def plan(self, workload: str, nodes: int) -> None:
        """KEDA asks this instance about ``workload``, whose node plan is ``nodes``."""
        self.service.resolve("llm", workload, {"endpoints": f"{URL}?{workload}",
                                               "nodePool": "h100"}).plan = plan(nodes)


@dataclass
class World:
    server: ApiServer
    time: VirtualTime
    pool: NodePool
    instances: dict[str, Instance] = field(default_factory=dict)
    patches: list[Patch] = field(default_factory=list)  # scale PATCHes as the server saw them
    server_hold: Network = lambda who, method, url: 0.0  # seconds the server holds a request

    async def start(self, name: str, **plans: int) -> Instance:
        client = ApiClient(Configuration(host=str(self.server.url)))
        client.user_agent = name
        self.time.connect(client)
        service = ScalerService(make_config(), clock=self.time, background=False,
                                kube_api=client)
        await service.start()
        elector = LeaderElector(
            CoordinationV1Api(client), LEASE_NS, LEASE, name,
            lease_duration_s=LEASE_DURATION_S, renew_deadline_s=RENEW_DEADLINE_S,
            retry_period_s=RETRY_PERIOD_S, clock=self.time, sleep=self.time.sleep)
        controller = NodePoolController(
            [self.pool], workloads=lambda: service.registry, api=client, leadership=elector,
            clock=self.time, registry=CollectorRegistry(), interval_s=INTERVAL_S,
            sleep=self.time.sleep)
        instance = self.instances[name] = Instance(name, client, service, elector, controller)
        for workload, nodes in plans.items():
            instance.plan(workload, nodes)
        self.time.spawn(f"{name}.elector", elector.run())
        self.time.spawn(f"{name}.nodes", controller.run())
        return instance

    async def stop(self, instance: Instance, *, release: bool) -> None:
        """A rolling update's SIGTERM (``release``: the Lease is handed back) or a crash."""
        await self.time.stop(f"{instance.name}.nodes")
        await self.time.stop(f"{instance.name}.elector")
        if release:
            await instance.elector.stop()

    async def run_until_leader(self, instance: Instance, limit_s: float = 60.0) -> float:
        """Run until ``instance`` leads; returns when it took the Lease."""
        until = self.time.now + limit_s
        while not instance.elector.is_leader:
            assert self.time.now < until, f"{instance.name} never took the Lease"
            await self.time.run_for(0.5)
        return self.time.now - instance.elector.term_age_s()

    async def gate(self, request: kmock.Request) -> None:
        number = int(request.headers.get(REQUEST_HEADER, "0"))
        who = self.time.sender(number)
        held = self.server_hold(who, request.method, str(request.url))
        if held:
            await self.time.hold(number, held)
        self.time.arrived(number, request.method, str(request.url))
        if request.method == "PATCH" and request.subresource == "scale":
            self.patches.append(Patch(who, self.time.now, request.data["spec"]["replicas"]))

    def patches_by(self, who: str) -> list[Patch]:
        return [p for p in self.patches if (p.who or "").startswith(f"{who}.")]


def pool(**overrides: float) -> NodePool:
    settings = {"cooldown_up_s": 0.0, "cooldown_down_s": COOLDOWN_DOWN_S, **overrides}
    return NodePool("h100", "machinedeployment", NS, "pool", max_nodes=40, namespaces=("llm",),
                    **settings)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    time = VirtualTime()
    async with ApiServer() as server, kmock.Server(server):
        found = World(server, time, pool())
        server.gate = found.gate
        server.keep_requests = False
        try:
            yield found
        finally:
            for name in list(time.tasks):
                await time.stop(name)
            for instance in found.instances.values():
                await instance.service.stop()
                await instance.client.close()


# --- a restart removes no node under a workload that has not re-registered yet ---------------


async def roll_over(world: World, *, crash: bool) -> tuple[Instance, float]:
    """The old instance has run the pool at 10 nodes for A (8) and B (2); the new one knows
    only B when it takes over (KEDA has not polled it about A yet)."""
    add_md(world.server, 2)
    old = await world.start("scaler-old", a=8, b=2)
    await world.time.run_for(30.5)
    new = await world.start("scaler-new", b=2)
    await world.time.run_for(2 * COOLDOWN_DOWN_S + 100.3)  # past the new one's own warm-up
    assert md_replicas(world.server) == 10 and not world.patches_by("scaler-new")
    lease = world.server.objects[kmock.resource("coordination.k8s.io", "v1", "leases"),
                                 LEASE_NS, LEASE]
    memory = json.loads(lease["metadata"]["annotations"][ANNOTATION])
    assert memory["h100"]["workloads"] == ["llm/a/desired-replicas", "llm/b/desired-replicas"]
    await world.stop(old, release=not crash)
    took_over = await world.run_until_leader(new)
    return new, took_over


@pytest.mark.parametrize("crash", [False, True], ids=["rolling-update", "crash"])
async def test_a_new_leader_keeps_the_nodes_of_a_workload_until_it_is_back(
        world: World, crash: bool) -> None:
    new, took_over = await roll_over(world, crash=crash)
    await world.time.run_for(COOLDOWN_DOWN_S / 2)
    assert md_replicas(world.server) == 10, world.patches_by("scaler-new")
    new.plan("a", 8)  # KEDA polls the new instance about A: 10 nodes are still what is needed
    await world.time.run_until(took_over + 3 * COOLDOWN_DOWN_S)
    assert md_replicas(world.server) == 10
    assert not world.patches_by("scaler-new")

    new.plan("a", 6)  # A needs fewer: the pool shrinks like any other time
    await world.time.run_for(INTERVAL_S + 0.1)
    assert md_replicas(world.server) == 8


@pytest.mark.parametrize("crash", [False, True], ids=["rolling-update", "crash"])
async def test_a_workload_that_never_comes_back_frees_its_nodes_after_twice_the_cooldown(
        world: World, crash: bool) -> None:
    _, took_over = await roll_over(world, crash=crash)
    await world.time.run_until(took_over + 2 * COOLDOWN_DOWN_S - 1)
    assert md_replicas(world.server) == 10, world.patches_by("scaler-new")
    await world.time.run_for(INTERVAL_S + 1.1)
    assert md_replicas(world.server) == 2  # B's 2: A is gone (its ScaledObject deleted)
    [shrink] = world.patches_by("scaler-new")
    assert took_over + 2 * COOLDOWN_DOWN_S <= shrink.at <= took_over + 2 * COOLDOWN_DOWN_S + (
        INTERVAL_S)  # the first node round after the warm-up's longest


# --- a stale leader never writes ---------------------------------------------------------------


async def a_leads_then_wants_more(world: World) -> tuple[Instance, Instance]:
    """A leads with a plan of 10 and B (3) waits; then A's plan grows to 12. No cooldowns:
    B may shrink the pool at once when it takes over."""
    world.pool = pool(cooldown_down_s=0.0)
    add_md(world.server, 2)
    a = await world.start("scaler-a", a=10)
    await world.time.run_for(0.7)
    b = await world.start("scaler-b", b=3)
    await world.time.run_for(40)
    assert a.elector.is_leader and md_replicas(world.server) == 10
    a.plan("a", 12)
    return a, b


class Stall:
    """From ``who``'s next scale PATCH on, each request of ``who`` waits until ``seconds``
    after that PATCH (where: before it leaves the client, or at the server)."""

    def __init__(self, time: VirtualTime, who: str, seconds: float) -> None:
        self.time, self.who, self.seconds = time, who, seconds
        self.until: float | None = None

    def __call__(self, who: str | None, method: str, url: str) -> float:
        if not (who or "").startswith(f"{self.who}."):
            return 0.0
        if self.until is None and method == "PATCH" and url.endswith("/scale"):
            self.until = self.time.now + self.seconds
        return 0.0 if self.until is None else max(0.0, self.until - self.time.now)


async def test_a_leader_whose_link_stalls_never_sends_its_write_after_it_lost_the_lease(
        world: World) -> None:
    a, b = await a_leads_then_wants_more(world)
    world.time.network = stall = Stall(world.time, "scaler-a", 30.0)
    await world.time.run_for(120)
    assert stall.until is not None, "A never tried to write 12"
    assert b.elector.is_leader and not a.elector.is_leader
    assert md_replicas(world.server) == 3  # B's plan, not A's stale 12
    late = [p for p in world.patches_by("scaler-a") if p.at >= stall.until - 30]
    assert late == [], late  # the write held before it left A was never sent


async def test_a_late_write_of_a_stale_leader_is_refused_and_not_retried(world: World) -> None:
    a, b = await a_leads_then_wants_more(world)
    world.server_hold = stall = Stall(world.time, "scaler-a", 30.0)  # A's API server is slow
    await world.time.run_for(150)
    assert stall.until is not None, "A never tried to write 12"
    assert b.elector.is_leader and not a.elector.is_leader
    assert md_replicas(world.server) == 3  # B's plan, not A's stale 12
    late = [p for p in world.patches_by("scaler-a") if p.at >= stall.until - 30]
    assert len(late) == 1, late  # the one already on its way (refused: 409), never a retry
