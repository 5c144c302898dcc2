"""Two scaler instances, one MachineDeployment: only the Lease holder ever scales it.

Each instance is what ``scaler.commands.serve.start_node_pools`` builds: a ``LeaderElector`` on
the shared Lease and a ``NodePoolController`` whose ``leadership`` is that elector, with its
own API client (its User-Agent names the instance, so the kmock API server's records say who
sent each PATCH). Both see the same node plan, which changes every round, so whoever acts
PATCHes the MachineDeployment's scale subresource every round. Time is one hand-moved clock
shared by both (the Lease timestamps, the takeover timing and the cooldowns); a round is: every
live instance runs one election round, then every live instance runs one controller round, then
the clock moves one retry period. Nothing sleeps.

Checked at every round: at most one instance believes it leads, the Lease names it, and only
it sent scale PATCHes; over the whole run, no PATCH from one instance follows one from the
other within a lease duration. Then the leader goes away, either crashing (no release: the
other takes over once the Lease has not changed for a lease duration on its own clock) or
shutting down (release: the other takes over at its next round).
"""

from __future__ import annotations

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
from scaler.service.service import ScalerService
from tests.clock import ManualClock
from tests.conftest import make_config
from tests.kube_api import NS, ApiServer, add_md, md_replicas

LEASE_NS, LEASE = "llm-scaler", "llm-predictive-scaler"
LEASE_DURATION_S, RENEW_DEADLINE_S, RETRY_PERIOD_S = 15.0, 10.0, 2.0
URL = "http://127.0.0.1:9/metrics"


class Clock:
    """Wall seconds for the electors (Lease timestamps), moved by hand; the node pool
    controllers read the same seconds as their monotonic time."""

    def __init__(self) -> None:
        self.now = 1_764_000_000.0

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now


@dataclass
class Instance:
    name: str
    client: ApiClient
    elector: LeaderElector
    controller: NodePoolController
    electing: bool = True  # its election loop runs
    running: bool = True  # its process runs (the controller acts on what the elector says)
    patches: list[float] = field(default_factory=list)  # clock times of its scale PATCHes


@dataclass
class Cluster:
    server: ApiServer
    clock: Clock
    service: ScalerService
    instances: dict[str, Instance]
    round_no: int = 0
    leaders: list[str | None] = field(default_factory=list)  # who led after each round
    seen: int = 0  # requests of the server already attributed

    def leader(self) -> str | None:
        believers = [i.name for i in self.instances.values()
                     if i.running and i.elector.is_leader]
        assert len(believers) <= 1, f"round {self.round_no}: both believe they lead"
        return believers[0] if believers else None

    def holder(self) -> str:
        return str(self.server.objects[kmock.resource("coordination.k8s.io", "v1", "leases"),
                                       LEASE_NS, LEASE]["spec"]["holderIdentity"])

    async def step(self) -> str | None:
        """One round; returns the instance that leads after it (and checks who acted)."""
        self.round_no += 1
        (workload,) = self.service.registry
        workload.plan = plan(3 + self.round_no % 4)  # a new node count every round
        order = list(self.instances.values())
        if self.round_no % 2:
            order.reverse()  # neither instance always goes first
        for instance in order:
            if instance.running and instance.electing:
                await instance.elector.round()
                self.leader()
        leader = self.leader()
        if leader is not None:
            assert self.holder() == leader
        for instance in order:
            if instance.running:
                await instance.controller.round()
        self.leader()
        senders = self.new_scale_patches()
        assert senders <= ({leader} if leader else set()), (
            f"round {self.round_no}: scale PATCHes from {senders}, leader {leader}")
        self.leaders.append(leader)
        self.clock.now += RETRY_PERIOD_S
        return leader

    def new_scale_patches(self) -> set[str]:
        requests = list(self.server)
        fresh, self.seen = requests[self.seen:], len(requests)
        senders = set()
        for request in fresh:
            if request.method == "PATCH" and request.subresource == "scale":
                sender = request.headers["User-Agent"]
                senders.add(sender)
                self.instances[sender].patches.append(self.clock.now)
        return senders

    def assert_never_both_within_a_lease(self) -> None:
        a, b = self.instances.values()
        for mine, theirs in ((a.patches, b.patches), (b.patches, a.patches)):
            for t in theirs:
                assert not [s for s in mine if t - LEASE_DURATION_S < s <= t], (
                    f"PATCHes from both within one lease duration around {t}")


def plan(nodes: int) -> Plan:
    return Plan(replicas=nodes * 8, nodes=nodes, active=True, need_now=1, need_ahead=nodes * 8,
                forecast_mean=0.0, forecast_upper=0.0, reason="test")


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    clock = Clock()
    async with ApiServer() as server, kmock.Server(server):
        add_md(server, 2)
        service = ScalerService(make_config(), clock=ManualClock(), background=False)
        await service.start()
        service.resolve("llm", "llama", {"endpoints": URL, "nodePool": "h100"})
        instances: dict[str, Instance] = {}
        try:
            for name in ("scaler-a", "scaler-b"):
                client = ApiClient(Configuration(host=str(server.url)))
                client.user_agent = name
                elector = LeaderElector(
                    CoordinationV1Api(client), LEASE_NS, LEASE, name,
                    lease_duration_s=LEASE_DURATION_S, renew_deadline_s=RENEW_DEADLINE_S,
                    retry_period_s=RETRY_PERIOD_S, clock=clock)
                pool = NodePool("h100", "machinedeployment", NS, "pool", cooldown_up_s=0,
                                cooldown_down_s=0)
                controller = NodePoolController(
                    [pool], workloads=lambda: service.registry, api=client,
                    leadership=elector, clock=clock,
                    registry=CollectorRegistry())
                instances[name] = Instance(name, client, elector, controller)
            yield Cluster(server, clock, service, instances)
        finally:
            for instance in instances.values():
                await instance.client.close()
            await service.stop()


async def lead_for_a_while(cluster: Cluster) -> Instance:
    """Ten rounds with both alive: one leads throughout and scales every round."""
    leaders = [await cluster.step() for _ in range(10)]
    first = leaders[0]
    assert first is not None and leaders == [first] * 10, leaders
    leader = cluster.instances[first]
    assert len(leader.patches) == 10  # it acted every round; the other never did
    assert md_replicas(cluster.server) == 3 + 10 % 4
    return leader


async def test_a_crashed_leader_is_replaced_once_its_lease_expires(cluster: Cluster) -> None:
    old = await lead_for_a_while(cluster)
    (new,) = [i for i in cluster.instances.values() if i is not old]
    last_renew = cluster.clock.now - RETRY_PERIOD_S
    old.running = False  # crashed: no release, no more rounds of any kind

    while await cluster.step() is None:
        assert cluster.clock.now - last_renew <= LEASE_DURATION_S + 2 * RETRY_PERIOD_S
    took_over = cluster.clock.now - RETRY_PERIOD_S
    # Not before the old Lease could have run out, and within one lease duration (plus the
    # retry period it takes to see the last renew and the one to notice the expiry).
    assert LEASE_DURATION_S <= took_over - last_renew <= LEASE_DURATION_S + 2 * RETRY_PERIOD_S
    assert cluster.holder() == new.name
    for _ in range(5):
        assert await cluster.step() == new.name
    assert new.patches and min(new.patches) == took_over
    assert md_replicas(cluster.server) == 3 + cluster.round_no % 4  # it follows the plan
    cluster.assert_never_both_within_a_lease()


async def test_a_leader_that_shuts_down_hands_over_at_once(cluster: Cluster) -> None:
    old = await lead_for_a_while(cluster)
    (new,) = [i for i in cluster.instances.values() if i is not old]
    await old.elector.stop()  # graceful: releases the Lease
    assert not old.elector.is_leader and cluster.holder() == ""

    assert await cluster.step() == new.name  # the old one's controller still runs: idle
    assert cluster.holder() == new.name
    for _ in range(5):
        assert await cluster.step() == new.name
    assert len(new.patches) == 6
    assert max(old.patches) < min(new.patches)
    # A release hands over within one retry period, so the hand-over is not spaced by a lease
    # duration: the guarantee is that the old leader stopped acting before it released.
    assert min(new.patches) - max(old.patches) == RETRY_PERIOD_S


async def test_a_leader_cut_off_from_the_api_server_stops_acting_at_once(
        cluster: Cluster) -> None:
    old = await lead_for_a_while(cluster)
    (new,) = [i for i in cluster.instances.values() if i is not old]
    old.client.configuration.host = "http://127.0.0.1:9"  # partitioned: nothing answers
    leaders = [await cluster.step() for _ in range(12)]
    assert leaders[0] is None  # the old one stopped believing at its first failed renew
    assert not old.elector.is_leader and new.name in leaders
    assert len(old.patches) == 10
    cluster.assert_never_both_within_a_lease()


async def test_a_leader_whose_election_loop_died_stops_acting(cluster: Cluster) -> None:
    # The process lives on (its controller keeps running) but its election loop is gone, as
    # when the `leader election` task of scaler.commands.serve ends on an exception round() does not
    # catch or is cancelled on its own. client-go's leader stops at its renew deadline; here
    # is_leader stays True, so after the other instance takes over both scale.
    old = await lead_for_a_while(cluster)
    old.electing = False  # no more election rounds, but its controller still runs
    for _ in range(15):  # past the lease duration: the other instance takes over
        await cluster.step()  # checks that one believes it leads and only it PATCHes
