"""LeaderElector against kmock over real HTTP: acquire, renew, contend, lose, release.

Time is a hand-moved clock and ``sleep`` only records and advances it, so lease expiry is tested
in zero real time. ``ApiServer`` (from ``test_nodes``) adds resourceVersion preconditions and
PUT to kmock's emulator, which the Lease protocol needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import kmock
import pytest
from kubernetes_asyncio.client import ApiClient, Configuration, CoordinationV1Api

from adapters.kubernetes.leader import LeaderElector
from tests.kube_api import ApiServer

LEASES = kmock.resource("coordination.k8s.io", "v1", "leases")
NS = "llm"


class Clock:
    def __init__(self) -> None:
        self.now = 1_764_000_000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
async def api(server: ApiServer) -> AsyncIterator[CoordinationV1Api]:
    async with ApiClient(Configuration(host=str(server.url))) as client:
        yield CoordinationV1Api(client)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def elector(api: CoordinationV1Api, clock: Clock) -> Callable[[str], LeaderElector]:
    def make(identity: str) -> LeaderElector:
        return LeaderElector(api, NS, "node-actuator", identity, clock=clock, sleep=clock.sleep)
    return make


def lease(server: ApiServer) -> Any:
    return server.objects[LEASES, NS, "node-actuator"]


async def test_acquires_an_absent_lease(server: ApiServer,
                                        elector: Callable[[str], LeaderElector]) -> None:
    a = elector("scaler-a")
    assert not a.is_leader
    assert await a.round()
    assert a.is_leader
    spec = lease(server)["spec"]
    assert spec["holderIdentity"] == "scaler-a"
    assert spec["leaseDurationSeconds"] == 15
    assert spec["leaseTransitions"] == 0
    assert spec["acquireTime"] == spec["renewTime"] == "2025-11-24T16:00:00+00:00"


async def test_renews_with_its_resource_version(server: ApiServer, clock: Clock,
                                                elector: Callable[[str], LeaderElector]) -> None:
    a = elector("scaler-a")
    await a.round()
    version = lease(server)["metadata"]["resourceVersion"]
    clock.now += 2
    assert await a.round()
    spec = lease(server)["spec"]
    assert spec["renewTime"] == "2025-11-24T16:00:02+00:00"
    assert spec["acquireTime"] == "2025-11-24T16:00:00+00:00"
    assert server.preconditions[-1] == version
    assert [r.method for r in server] == ["GET", "POST", "GET", "PUT"]


async def test_second_waits_while_first_renews_then_takes_over(
        server: ApiServer, clock: Clock, elector: Callable[[str], LeaderElector]) -> None:
    a, b = elector("scaler-a"), elector("scaler-b")
    assert await a.round()
    for _ in range(4):  # 40 s: far past one lease duration, but renewed every 10 s
        assert not await b.round()
        clock.now += 10
        assert await a.round()
    assert not await b.round()

    clock.now += 14.9  # a is silent now; b counts from its own last sighting of a change
    assert not await b.round()
    clock.now += 0.1
    assert await b.round()
    assert lease(server)["spec"]["holderIdentity"] == "scaler-b"
    assert lease(server)["spec"]["leaseTransitions"] == 1

    assert not await a.round()  # the lease was taken over: a knows at once
    assert not a.is_leader


async def test_leadership_is_lost_at_once_when_a_renew_fails(
        server: ApiServer, elector: Callable[[str], LeaderElector]) -> None:
    a = elector("scaler-a")
    assert await a.round()
    server["get", LEASES] << 500 << {"kind": "Status", "code": 500, "reason": "InternalError"}
    assert not await a.round()
    assert not a.is_leader


async def test_a_renew_refused_with_conflict_loses_leadership(
        server: ApiServer, elector: Callable[[str], LeaderElector]) -> None:
    a = elector("scaler-a")
    assert await a.round()
    server.fail_writes(409, "Conflict")
    assert not await a.round()


async def test_only_one_wins_a_race_for_an_expired_lease(
        server: ApiServer, clock: Clock, elector: Callable[[str], LeaderElector]) -> None:
    a, b, c = elector("scaler-a"), elector("scaler-b"), elector("scaler-c")
    await a.round()
    await b.round(), await c.round()
    clock.now += 15

    def c_writes_first(api: ApiServer) -> None:  # between b's read and b's replace
        lease(api).patch({"metadata": {"resourceVersion": api.bump()},
                          "spec": {"holderIdentity": "scaler-c"}})

    server.meddle(c_writes_first)
    assert not await b.round()
    assert lease(server)["spec"]["holderIdentity"] == "scaler-c"


async def test_only_one_creates_an_absent_lease(
        server: ApiServer, elector: Callable[[str], LeaderElector]) -> None:
    a, b = elector("scaler-a"), elector("scaler-b")
    won = await asyncio.gather(a.round(), b.round())
    assert sorted(won) == [False, True]
    holder = lease(server)["spec"]["holderIdentity"]
    assert (a if holder == "scaler-a" else b).is_leader


async def test_stop_releases_so_the_next_takes_over_at_once(
        server: ApiServer, elector: Callable[[str], LeaderElector]) -> None:
    a, b = elector("scaler-a"), elector("scaler-b")
    await a.round()
    assert not await b.round()
    await a.stop()
    assert not a.is_leader
    assert lease(server)["spec"]["holderIdentity"] == ""
    assert lease(server)["spec"]["leaseDurationSeconds"] == 1
    assert not await a.round()  # stopped for good
    assert await b.round()  # no wait for a lease duration
    assert lease(server)["spec"]["leaseTransitions"] == 1  # counted as client-go counts


async def test_run_renews_every_retry_period_until_stopped(
        server: ApiServer, clock: Clock, elector: Callable[[str], LeaderElector]) -> None:
    a = elector("scaler-a")
    task = asyncio.create_task(a.run())
    async with asyncio.timeout(5):
        while len(clock.sleeps) < 3:  # noqa: ASYNC110 - the fake sleep has no event to await
            await asyncio.sleep(0.001)
    assert a.is_leader
    await a.stop()
    await asyncio.wait_for(task, 5)
    assert set(clock.sleeps) == {2}
    assert lease(server)["spec"]["holderIdentity"] == ""


def test_durations_must_be_ordered(api: CoordinationV1Api) -> None:
    with pytest.raises(ValueError) as caught:
        LeaderElector(api, NS, "l", "me", lease_duration_s=10, renew_deadline_s=10)
    assert str(caught.value) == ("leader election needs lease_duration_s > renew_deadline_s >"
                                 " retry_period_s > 0, got 10 > 10 > 2")


async def test_a_renew_slower_than_the_deadline_loses_leadership(
        server: ApiServer, api: CoordinationV1Api, clock: Clock) -> None:
    a = LeaderElector(api, NS, "node-actuator", "scaler-a", lease_duration_s=0.1,
                      renew_deadline_s=0.02, retry_period_s=0.01, clock=clock, sleep=clock.sleep)
    assert await a.round()
    never = asyncio.Event()

    async def hang() -> None:
        await never.wait()

    server["get", LEASES] << hang
    assert not await a.round()
    never.set()
