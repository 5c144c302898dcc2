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
    """``sleep`` between rounds moves the clock at once; the sleep that times one round (the
    renew deadline, 10 s) runs out only once the test sets ``deadline`` (a round that ends
    first cancels it)."""

    def __init__(self) -> None:
        self.now = 1_764_000_000.0
        self.sleeps: list[float] = []
        self.deadline = asyncio.Event()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if seconds == 10:  # the renew deadline
            await self.deadline.wait()
            return
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
    a = LeaderElector(api, NS, "node-actuator", "scaler-a", clock=clock, sleep=clock.sleep)
    assert await a.round()
    never, arrived = asyncio.Event(), asyncio.Event()

    async def hang() -> None:
        arrived.set()
        await never.wait()

    server["get", LEASES] << hang
    renew = asyncio.create_task(a.round())
    await asyncio.wait_for(arrived.wait(), 5)
    assert a.is_leader  # not yet: the renew deadline has not passed
    clock.deadline.set()  # now it has
    assert not await asyncio.wait_for(renew, 5)
    assert not a.is_leader
    never.set()


# --- what a leader hands on: the Lease's annotations -------------------------------------------

NOTE = "llm-predictive-scaler/node-pools"


def annotations(server: ApiServer) -> dict[str, str]:
    return dict(lease(server)["metadata"].get("annotations") or {})


async def test_annotate_writes_at_once_and_every_renew_keeps_it(
        server: ApiServer, clock: Clock, elector: Callable[[str], LeaderElector]) -> None:
    a = elector("scaler-a")
    assert await a.round() and a.term == 1 and a.term_annotations == {}
    puts = len([r for r in server if r.method == "PUT"])
    assert await a.annotate({NOTE: "v1"})
    assert annotations(server) == {NOTE: "v1"}
    assert len([r for r in server if r.method == "PUT"]) == puts + 1  # written now
    clock.now += 2
    assert await a.round() and a.term == 1  # a renew: the same term
    assert annotations(server) == {NOTE: "v1"}


async def test_annotations_outlive_a_takeover_and_a_release(
        server: ApiServer, clock: Clock, elector: Callable[[str], LeaderElector]) -> None:
    a, b, c = elector("scaler-a"), elector("scaler-b"), elector("scaler-c")
    await a.round()
    lease(server).patch({"metadata": {"annotations": {"someone.else/note": "kept"}}})
    await a.annotate({NOTE: "from a"})
    assert not await b.round()
    clock.now += 15  # a is gone without a release: b takes over
    assert await b.round()
    assert b.term == 1 and b.term_annotations == {"someone.else/note": "kept", NOTE: "from a"}
    assert annotations(server) == b.term_annotations
    await b.annotate({NOTE: "from b"})
    await b.stop()  # released: c takes over at once and reads what b knew
    assert lease(server)["spec"]["holderIdentity"] == ""
    assert await c.round()
    assert c.term_annotations == {"someone.else/note": "kept", NOTE: "from b"}


async def test_a_restarted_process_starts_a_term_even_where_the_lease_names_it(
        server: ApiServer, elector: Callable[[str], LeaderElector]) -> None:
    """A container restarted in its pod keeps the pod's name, and so the Lease's holder: the new
    process has led nothing yet and must learn what its predecessor left."""
    before = elector("scaler-a")
    await before.round()
    await before.annotate({NOTE: "remembered"})
    after = elector("scaler-a")  # same identity, new process
    assert await after.round()
    assert after.term == 1 and after.term_annotations == {NOTE: "remembered"}


async def test_no_annotation_written_without_the_lease(
        server: ApiServer, clock: Clock, elector: Callable[[str], LeaderElector]) -> None:
    a, b = elector("scaler-a"), elector("scaler-b")
    await a.round()
    assert not await b.annotate({NOTE: "b is no leader"})
    assert NOTE not in annotations(server)
    clock.now += 10  # a's renew deadline passed: it may not write either
    assert not await a.annotate({NOTE: "too late"})
    assert NOTE not in annotations(server)


async def test_time_left_is_the_leadership_proven_so_far(
        clock: Clock, elector: Callable[[str], LeaderElector]) -> None:
    a = elector("scaler-a")
    assert a.time_left_s() == 0
    await a.round()
    clock.now += 3
    assert a.time_left_s() == 7  # renew deadline 10 s from the renew
    clock.now += 7
    assert a.time_left_s() == 0 and not a.is_leader


async def test_a_term_begins_at_each_acquisition(
        server: ApiServer, clock: Clock, elector: Callable[[str], LeaderElector]) -> None:
    a, b = elector("scaler-a"), elector("scaler-b")
    await a.round()
    assert not await b.round()
    clock.now += 15
    assert await b.round() and b.term == 1
    assert not await a.round()
    await b.stop()
    assert await a.round() and a.term == 2
