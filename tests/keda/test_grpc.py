"""The KEDA contract, called through a client generated from the proto, in KEDA's order.

Each poll KEDA calls GetMetricSpec, GetMetrics, then IsActive; with external-push it
holds one StreamIsActive. Scrapes are triggered by the test (the service runs on a
hand-moved clock without background loops), so timing is exact and nothing sleeps.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import grpc
import pytest

from scaler.commands.serve import RunningApp, start_app
from scaler.keda.proto import externalscaler_pb2 as pb
from scaler.service.service import ScalerService
from scaler.sim.emulation.engine_state import EngineState
from tests.clock import ManualClock
from tests.conftest import make_config, scrape_all, wait_until

NS, NAME = "llm", "llama-8b"


def ref(*urls: str, **extra: str) -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name=NAME, namespace=NS,
                              scalerMetadata={"endpoints": ",".join(urls), **extra})


def load(pod, *, waiting: int = 0, running: int = 0, kv: float = 0.0) -> None:
    pod.engines = [EngineState(waiting=waiting, running=running, kv_cache_usage=kv)]


@pytest.fixture(params=[False, True], ids=["one process", "front process"])
async def app(request: pytest.FixtureRequest, clock: ManualClock) -> AsyncIterator[RunningApp]:
    """Every test of the contract runs twice: KEDA served by the scaling process itself, and
    by a front process (``server.front_process``) that the scaling process pushes to."""
    config = make_config({"front_process": request.param}, timeout_s=1.0)
    running = await start_app(config, ScalerService(config, clock=clock, background=False))
    yield running
    await running.stop()


async def poll(keda, request: pb.ScaledObjectRef) -> tuple[pb.MetricSpec, pb.MetricValue, bool]:
    """One KEDA poll: GetMetricSpec, GetMetrics, IsActive."""
    spec = (await keda.GetMetricSpec(request)).metricSpecs[0]
    metrics = await keda.GetMetrics(
        pb.GetMetricsRequest(scaledObjectRef=request, metricName=spec.metricName))
    active = await keda.IsActive(request)
    return spec, metrics.metricValues[0], active.result


async def test_keda_poll_returns_the_desired_replicas(app, keda, pods):
    a, b = await pods(), await pods()
    load(a, waiting=12, running=40, kv=0.9)
    load(b, waiting=8, running=40, kv=0.9)
    request = ref(a.url, b.url, policy="reactive")
    await keda.GetMetricSpec(request)  # registers the workload
    await scrape_all(app)

    spec, value, active = await poll(keda, request)

    assert spec.metricName == "desired-replicas"
    assert (spec.targetSize, spec.targetSizeFloat) == (1, 1.0)
    # 20 waiting / 5 per replica = 4 replicas; KV 0.9/0.8 on 2 pods = 3: queue wins.
    assert value.metricValue == 4
    assert value.metricValueFloat == 4.0
    assert math.ceil(value.metricValueFloat / spec.targetSizeFloat) == 4
    assert active is True


async def test_idle_workload_is_inactive_and_asks_for_min(app, keda, pods):
    pod = await pods()
    request = ref(pod.url, minReplicas="1")
    await keda.GetMetricSpec(request)
    await scrape_all(app)
    _, value, active = await poll(keda, request)
    assert (value.metricValue, active) == (1, False)


async def test_before_first_scrape_answers_unavailable(app, keda, pods):
    pod = await pods()
    request = ref(pod.url)
    spec = await keda.GetMetricSpec(request)
    assert spec.metricSpecs[0].metricName == "desired-replicas"
    for call in (keda.IsActive(request),
                 keda.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=request))):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "no scrape has completed yet" in (info.value.details() or "")


@pytest.mark.parametrize("method", ["GetMetricSpec", "IsActive", "GetMetrics", "StreamIsActive"])
async def test_bad_metadata_is_invalid_argument_naming_the_key(app, keda, method):
    request = ref("http://127.0.0.1:1/metrics", targetKvCacheUsage="80%")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        if method == "GetMetrics":
            await keda.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=request))
        elif method == "StreamIsActive":
            async for _ in keda.StreamIsActive(request):
                pass
        else:
            await getattr(keda, method)(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'targetKvCacheUsage' has value '80%': expected a fraction in (0, 1]" in (
        info.value.details() or "")
    assert len(app.service.registry) == 0


async def test_metric_name_is_compared_case_insensitively(app, keda, pods):
    """KEDA up to 2.11 sent the metric name lower-cased."""
    pod = await pods()
    request = ref(pod.url, metricName="Llama-Replicas", policy="reactive")
    await keda.GetMetricSpec(request)
    await scrape_all(app)
    for name in ("llama-replicas", "LLAMA-REPLICAS", "Llama-Replicas"):
        value = (await keda.GetMetrics(pb.GetMetricsRequest(
            scaledObjectRef=request, metricName=name))).metricValues[0]
        assert value.metricName == "Llama-Replicas"


async def test_unknown_metric_name_is_invalid_argument(app, keda, pods):
    pod = await pods()
    request = ref(pod.url)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await keda.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=request, metricName="queue"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "metricName 'queue' is not served" in (info.value.details() or "")


async def test_down_pod_goes_unavailable_once_stale_and_others_keep_working(
        app, keda, pods, clock: ManualClock):
    sick, healthy = await pods(), await pods()
    load(healthy, waiting=10)
    sick_ref = pb.ScaledObjectRef(name="sick", namespace=NS, scalerMetadata={
        "endpoints": sick.url, "policy": "reactive"})
    healthy_ref = pb.ScaledObjectRef(name="healthy", namespace=NS, scalerMetadata={
        "endpoints": healthy.url, "policy": "reactive"})
    await keda.GetMetricSpec(sick_ref)
    await keda.GetMetricSpec(healthy_ref)
    await scrape_all(app)
    await sick.stop()

    # Down, but the last good page is still within the staleness limit: last decision holds.
    clock.advance(10)
    await scrape_all(app)
    assert (await poll(keda, sick_ref))[1].metricValue == 0

    clock.advance(10)  # now 20 s > stale_after_s = 15 s
    await scrape_all(app)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await keda.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=sick_ref))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    details = info.value.details() or ""
    assert "stale" in details and "scrape.stale_after_s=15" in details
    assert "1 of 1 pod page(s) could not be fetched" in details
    assert sick.url not in details  # which way it failed is in the log, not for the caller
    assert (await poll(keda, healthy_ref))[1].metricValue == 2


async def test_pod_serving_garbage_is_missing_not_zero(app, keda, pods, clock: ManualClock):
    good, bad = await pods(), await pods()
    load(good, waiting=20, kv=0.5)
    load(bad, waiting=20, kv=0.5)
    request = ref(good.url, bad.url, policy="reactive")
    await keda.GetMetricSpec(request)
    await scrape_all(app)
    assert (await poll(keda, request))[1].metricValue == 8
    bad.fault = "garbage"
    clock.advance(20)
    await scrape_all(app)
    # The broken pod counts as 0 while scaling up: 20 / (2 pods) / 5 -> ceil(2 * 2) = 4.
    _, value, active = await poll(keda, request)
    assert value.metricValue == 4
    assert active is True
    errors = app.service.telemetry.registry.get_sample_value(
        "scaler_scrape_errors_total",
        {"namespace": NS, "scaledobject": NAME, "source": "inference", "kind": "bad_page"})
    assert errors == 1


async def test_stream_is_active_pushes_true_each_time_work_appears_never_false(
        app, keda, pods):
    """Only ``true`` is pushed: KEDA up to 2.17 acted on a pushed ``false`` for this trigger
    alone (deactivating a ScaledObject other triggers keep active); IsActive says idle."""
    pod = await pods()
    request = ref(pod.url, policy="reactive")  # a fresh predictive plan would hold a window
    stream = keda.StreamIsActive(request)
    first = asyncio.ensure_future(stream.read())
    await wait_until(lambda: len(app.service.registry) == 1)
    await scrape_all(app)
    assert (await keda.IsActive(request)).result is False
    load(pod, waiting=3)
    await scrape_all(app)  # the next scrape after work appears
    assert (await asyncio.wait_for(first, 5)).result is True  # nothing was pushed while idle

    nxt = asyncio.ensure_future(stream.read())
    load(pod)
    await scrape_all(app)
    assert (await keda.IsActive(request)).result is False
    load(pod, waiting=3)
    await scrape_all(app)
    assert (await asyncio.wait_for(nxt, 5)).result is True  # no false in between
    stream.cancel()


async def test_is_active_and_the_stream_turn_true_before_a_forecast_ramp(
        app, keda, pods, clock: ManualClock):
    """An idle predictive workload whose history ramps at 09:00: inactive at night, active
    at 08:57:30 with no request seen, through IsActive and StreamIsActive alike."""
    import numpy as np

    pod = await pods()  # idle all along
    night = 7 * 86400 + 3 * 3600
    clock.advance(night - clock.monotonic())
    request = ref(pod.url, minReplicas="0")
    await keda.GetMetricSpec(request)
    (workload,) = app.service.registry
    assert workload.planner is not None
    times = np.arange(0.0, night, 300.0)
    hours = (times % 86400) / 3600
    workload.planner.forecaster.warm_start(times, np.where((hours >= 9) & (hours < 17), 200.0,
                                                           0.0))
    workload.planner.warm_started(float(times[-1]))
    for _ in range(22):  # past the scale-down window a fresh plan holds the running pod for
        await scrape_all(app)
        clock.advance(15)
    _, value, active = await poll(keda, request)
    assert (value.metricValue, active) == (0, False)
    stream = keda.StreamIsActive(request)
    nxt = asyncio.ensure_future(stream.read())  # nothing is pushed while inactive

    clock.advance(night + 6 * 3600 - 150 - clock.monotonic())  # 08:57:30
    await scrape_all(app)
    assert (await asyncio.wait_for(nxt, 5)).result is True
    _, value, active = await poll(keda, request)
    assert active is True and value.metricValue >= 1
    stream.cancel()


async def test_stream_is_active_sends_nothing_until_data_exists(app, keda, pods):
    pod = await pods()
    await pod.stop()
    stream = keda.StreamIsActive(ref(pod.url))
    first = asyncio.ensure_future(stream.read())
    await wait_until(lambda: len(app.service.registry) == 1)
    await scrape_all(app)
    done, _ = await asyncio.wait([first], timeout=0.3)  # a message would cross in ~1 ms
    assert not done
    stream.cancel()


async def test_rpc_metrics_are_counted(app, keda, pods):
    pod = await pods()
    request = ref(pod.url)
    await keda.GetMetricSpec(request)
    await scrape_all(app)
    await poll(keda, request)
    await app.settle()  # a front process reports its calls once a second
    registry = app.service.telemetry.registry
    for method in ("GetMetricSpec", "GetMetrics", "IsActive"):
        assert registry.get_sample_value(
            "scaler_rpc_requests_total", {"method": method, "code": "OK"}) == (
            2 if method == "GetMetricSpec" else 1)


async def test_ttft_over_slo_scales_up_from_the_histogram(app, keda, pods, clock: ManualClock):
    pod = await pods()
    engine = EngineState(running=10, kv_cache_usage=0.8)
    pod.engines = [engine]
    request = ref(pod.url, targetTtftSeconds="2")
    await keda.GetMetricSpec(request)
    await scrape_all(app)
    assert (await poll(keda, request))[1].metricValue == 1
    for _ in range(20):  # 20 requests, each 6 s to first token, within the rate window
        engine.record_request(prompt_tokens=500, generation_tokens=50, queue_s=5.5,
                              ttft_s=6.0, e2e_s=8.0)
    clock.advance(10)
    await scrape_all(app)
    _, value, _ = await poll(keda, request)
    # p95 TTFT lands in the (5, 7.5] bucket: ratio to the 2 s SLO is 2.5-3.75 -> 3 or 4.
    assert value.metricValue in (3, 4)
    (workload,) = app.service.registry
    assert workload.decision is not None
    assert workload.decision.reason.startswith("1 -> ") and "ttft p95" in workload.decision.reason


async def test_a_held_stream_never_rolls_newer_metadata_back(app, keda, pods):
    old, new = await pods(), await pods()
    load(old, waiting=3)  # active: the stream's first message comes with the first decision
    stream = keda.StreamIsActive(ref(old.url))
    first = asyncio.ensure_future(stream.read())
    await wait_until(lambda: len(app.service.registry) == 1)
    await scrape_all(app)
    await asyncio.wait_for(first, 5)
    await keda.GetMetricSpec(ref(new.url))  # the ScaledObject now lists another pod
    for _ in range(3):
        await scrape_all(app)
        await asyncio.sleep(0)
    (workload,) = app.service.registry
    assert list(workload.pods) == [new.url]
    stream.cancel()
