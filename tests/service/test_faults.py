"""The fault suite: whatever breaks, the service keeps serving, never scales down for want of
data, answers UNAVAILABLE once data is stale (KEDA's fallback) and recovers by itself."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest

from scaler.config.settings import PrometheusSettings
from scaler.service.service import ScalerService, Unavailable
from scaler.sim.emulation.engine_state import EngineState
from scaler.sim.emulation.pod_server import EmulatedVllmPod
from tests.clock import ManualClock
from tests.conftest import make_config, wait_until

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


def queue_proposal(service: ScalerService, workload) -> int:  # type: ignore[no-untyped-def]
    """What the pods' queues alone ask for: proof that their pages were read."""
    proposals = service.answer(workload).decision.proposals
    return next(p.replicas for p in proposals if p.signal == "queue")


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


@pytest.fixture
async def slow_prometheus() -> AsyncIterator[tuple[str, asyncio.Event, list[str]]]:
    """A Prometheus that accepts connections but answers nothing until the test lets it
    (the list holds the path of every request it is stalling)."""
    from aiohttp import web

    answer = asyncio.Event()
    stalled: list[str] = []

    async def stall(request: web.Request) -> web.Response:
        stalled.append(request.path)
        await answer.wait()
        return web.json_response({"status": "success",
                                  "data": {"resultType": "matrix", "result": []}})

    app = web.Application()
    app.router.add_get("/api/v1/query", stall)
    app.router.add_get("/api/v1/query_range", stall)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", answer, stalled
    answer.set()
    await runner.cleanup()


async def test_a_slow_prometheus_never_holds_up_the_answers(pods, slow_prometheus):
    """Past its timeout, a stalled Prometheus means a cold forecaster and pods scraped
    directly: the workload is answered as if Prometheus were not configured."""
    url, *_ = slow_prometheus
    (pod,) = await busy_pods(pods, 1)
    config = make_config()
    config = dataclasses.replace(config, prometheus=PrometheusSettings(
        url=url, history_query="sum(rate(x[5m]))", timeout_s=0.3, source_timeout_s=0.3))
    service = ScalerService(config, clock=ManualClock(), background=False)
    await service.start()
    try:
        workload = service.resolve("ns", "so", {"endpoints": pod.url,
                                                "metricsSource": "prometheus"})
        await service.scrape(workload)  # the Prometheus query times out, the pod is read
        assert queue_proposal(service, workload) > 1
        errors = service.telemetry.registry.get_sample_value(
            "scaler_scrape_errors_total", {"namespace": "ns", "scaledobject": "so",
                                           "source": "prometheus", "kind": "unreachable"})
        assert errors == 1
        await wait_until(lambda: service.telemetry.registry.get_sample_value(
            "scaler_forecast_warm_starts_total", {"result": "failed"}) == 1)
        assert queue_proposal(service, workload) > 1
    finally:
        await service.stop()


async def test_a_stalled_prometheus_costs_one_timeout_not_one_per_workload(
        pods, slow_prometheus):
    """Many workloads, few scrape connections: the pods are still read (Prometheus has its own
    pool), and after the first timeouts every workload goes straight to its pods."""
    url, *_ = slow_prometheus
    running = await busy_pods(pods, 6)
    config = dataclasses.replace(make_config(max_concurrency=2), prometheus=PrometheusSettings(
        url=url, source_timeout_s=0.3))
    service = ScalerService(config, clock=ManualClock(), background=False)
    await service.start()
    try:
        workloads = [service.resolve("ns", f"so-{i}", {"endpoints": pod.url,
                                                       "policy": "reactive",
                                                       "metricsSource": "prometheus"})
                     for i, pod in enumerate(running)]
        errors = service.telemetry.registry.get_sample_value

        def timeouts() -> float:
            return sum(errors("scaler_scrape_errors_total", {
                "namespace": "ns", "scaledobject": f"so-{i}", "source": "prometheus",
                "kind": "unreachable"}) or 0 for i in range(6))

        await asyncio.gather(*(service.scrape(w) for w in workloads))  # all asked at once
        assert all(desired(service, w) > 1 for w in workloads)
        first = timeouts()
        service.clock.advance(5)
        await asyncio.gather(*(service.scrape(w) for w in workloads))
        assert timeouts() == first  # the breaker is open: straight to the pods
        assert all(desired(service, w) > 1 for w in workloads)
    finally:
        await service.stop()


async def test_stalled_prometheus_requests_never_hold_the_pod_scrapes_connections(
        pods, slow_prometheus):
    """Two warm starts hang on Prometheus while the scrape pool has two connections: the pods
    are still read, because Prometheus has a pool of its own."""
    url, _, stalled = slow_prometheus
    (pod,) = await busy_pods(pods, 1)
    config = dataclasses.replace(
        make_config(max_concurrency=2, timeout_s=0.5),
        prometheus=PrometheusSettings(url=url, history_query="sum(rate(x[5m]))", timeout_s=30))
    service = ScalerService(config, clock=ManualClock(), background=False)
    await service.start()
    try:
        for i in range(2):
            service.resolve("ns", f"cold-{i}", {"endpoints": f"{pod.url}?{i}"})
        await wait_until(lambda: len(stalled) == 2)  # both warm starts hang in Prometheus
        workload = service.resolve("ns", "so", {"endpoints": pod.url, "policy": "reactive"})
        await service.scrape(workload)
        assert workload.pods[pod.url].problem is None
        assert desired(service, workload) > 1
    finally:
        await service.stop()
