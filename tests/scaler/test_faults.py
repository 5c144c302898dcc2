"""The fault suite: whatever breaks, the service keeps serving, never scales down for want of
data, answers UNAVAILABLE once data is stale (KEDA's fallback) and recovers by itself."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from scaler.clock import ManualClock
from scaler.emulation.pod_server import EmulatedVllmPod
from scaler.emulation.vllm_metrics import EngineState
from scaler.service import ScalerService, Unavailable
from tests.conftest import make_config

STALE_AFTER = 15.0


@pytest.fixture
async def service() -> AsyncIterator[ScalerService]:
    svc = ScalerService(make_config(timeout_s=0.2, stale_after_s=STALE_AFTER),
                        clock=ManualClock(), background=False)
    await svc.start()
    yield svc
    await svc.stop()


async def busy_pods(pods, n: int = 2) -> list[EmulatedVllmPod]:  # type: ignore[no-untyped-def]
    made = [await pods() for _ in range(n)]
    for pod in made:
        pod.engines = [EngineState(running=20, waiting=12, kv_cache_usage=0.9)]
    return made


def desired(service: ScalerService, workload) -> int:  # type: ignore[no-untyped-def]
    return service.answer(workload).decision.desired_replicas


async def break_pod(pod: EmulatedVllmPod, fault: str) -> None:
    if fault == "down":
        await pod.stop()
    else:
        pod.fault = fault  # type: ignore[assignment]


async def heal_pod(pod: EmulatedVllmPod, fault: str) -> None:
    if fault == "down":
        await pod.start()  # the same port again, like a restarted pod
    pod.fault = None


FAULTS = ["down", "hang", "http_500", "garbage", "truncated"]


@pytest.mark.parametrize("fault", FAULTS)
async def test_one_broken_pod_never_lowers_the_answer(service, pods, fault):
    first, second = await busy_pods(pods)
    workload = service.resolve("ns", "so", {"endpoints": f"{first.url},{second.url}",
                                            "policy": "reactive"})
    await service.scrape(workload)
    before = desired(service, workload)
    assert before > 2
    await break_pod(second, fault)
    for _ in range(3):
        service.clock.advance(5)
        await service.scrape(workload)
        assert desired(service, workload) >= before  # the missing pod is not taken as idle
    assert workload.pods[second.url].problem
    await heal_pod(second, fault)
    service.clock.advance(5)
    await service.scrape(workload)
    assert desired(service, workload) == before
    assert workload.pods[second.url].problem is None


@pytest.mark.parametrize("fault", FAULTS)
async def test_every_pod_broken_is_unavailable_once_stale_then_recovers(service, pods, fault):
    (pod,) = await busy_pods(pods, 1)
    workload = service.resolve("ns", "so", {"endpoints": pod.url, "policy": "reactive"})
    await service.scrape(workload)
    before = desired(service, workload)
    await break_pod(pod, fault)
    service.clock.advance(5)
    await service.scrape(workload)
    assert desired(service, workload) == before  # still fresh: the last good answer stands
    service.clock.advance(STALE_AFTER)
    await service.scrape(workload)
    with pytest.raises(Unavailable, match="metrics are stale"):
        service.answer(workload)
    await heal_pod(pod, fault)
    service.clock.advance(5)
    await service.scrape(workload)
    assert desired(service, workload) == before


async def test_a_pod_vanishing_between_scrapes_is_missing_not_idle(service, pods):
    first, second = await busy_pods(pods)
    workload = service.resolve("ns", "so", {"endpoints": f"{first.url},{second.url}",
                                            "policy": "reactive"})
    await service.scrape(workload)
    before = desired(service, workload)
    assert before > len(workload.pods)
    await second.stop()  # gone for good: connection refused from now on
    for _ in range(5):
        service.clock.advance(5)
        await service.scrape(workload)
        # Once stale, the pod counts as idle while scaling up (the HPA's rule): the answer
        # may shrink toward what the pods with data show, never below the replicas running.
        assert desired(service, workload) > len(workload.pods)


async def test_a_clock_jump_is_a_gap_not_a_drop(service, pods):
    """The host slept (or the monotonic clock jumped) for two hours between two scrapes."""
    (pod,) = await busy_pods(pods, 1)
    workload = service.resolve("ns", "so", {"endpoints": pod.url})  # predictive
    for _ in range(4):
        await service.scrape(workload)
        service.clock.advance(5)
    before = desired(service, workload)
    service.clock.advance(2 * 3600)
    with pytest.raises(Unavailable, match="metrics are stale"):
        service.answer(workload)  # nothing read for two hours: KEDA's fallback
    await service.scrape(workload)
    assert desired(service, workload) >= before  # the gap taught nothing, scaled nothing down
    planner = workload.planner
    assert planner is not None and planner.forecaster.to_dict()  # state intact, no exception


async def test_a_restarted_service_does_not_scale_down_at_once(pods):
    """Mid-ramp the scaler restarts, with nothing saved: it holds the three replicas running
    for one scale-down window instead of dropping to what one quiet scrape suggests."""
    running = [await pods() for _ in range(3)]
    for pod in running:
        pod.engines = [EngineState(running=1, waiting=0, kv_cache_usage=0.05)]
    restarted = ScalerService(make_config(), clock=ManualClock(), background=False)
    await restarted.start()
    try:
        workload = restarted.resolve("ns", "so", {"endpoints": ",".join(p.url for p in running)})
        await restarted.scrape(workload)
        assert desired(restarted, workload) == 3
        assert workload.plan is not None and "stabilised" in workload.plan.reason
        for _ in range(25):  # 375 s of quiet scrapes: past the window it may let go
            restarted.clock.advance(15)
            await restarted.scrape(workload)
        assert desired(restarted, workload) < 3
    finally:
        await restarted.stop()
