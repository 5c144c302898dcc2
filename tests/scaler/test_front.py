"""scaler front: KEDA's calls answered from a cache of a real backend's answers, over real gRPC.

The backend is the real service (gRPC server, hand-moved clock, scrapes the test triggers);
the front is a real gRPC server with its own hand-moved clock; KEDA is a client generated from
the proto. Nothing sleeps: background refreshes are awaited by condition.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from scaler.app import RunningApp
from scaler.emulation.vllm_metrics import EngineState
from scaler.front import AnswerCache, start_front
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from tests.conftest import wait_until
from tests.scaler.test_grpc import poll, scrape_all

NS, NAME = "llm", "llama-8b"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def front_clock() -> Clock:
    return Clock()


@pytest.fixture
async def front(app: RunningApp, front_clock: Clock
                ) -> AsyncIterator[tuple[pb_grpc.ExternalScalerStub, AnswerCache]]:
    cache = AnswerCache(fresh_s=1.0, max_age_s=10.0, clock=front_clock)
    server, port, channel = await start_front(f"127.0.0.1:{app.grpc_port}", host="127.0.0.1",
                                              port=0, cache=cache)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as keda_channel:
        yield pb_grpc.ExternalScalerStub(keda_channel), cache  # type: ignore[no-untyped-call]
    await server.stop(0)
    await channel.close(None)


def ref(*urls: str, **extra: str) -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name=NAME, namespace=NS, scalerMetadata={
        "endpoints": ",".join(urls), "policy": "reactive", **extra})


async def test_answers_are_the_backend_s_then_refreshed_in_the_background(
        app, pods, front, front_clock):
    keda, cache = front
    pod = await pods()
    pod.engines = [EngineState(waiting=20)]
    request = ref(pod.url)
    await keda.GetMetricSpec(request)  # registers the workload in the backend
    await scrape_all(app)
    spec, value, active = await poll(keda, request)
    assert (spec.metricName, value.metricValue, active) == ("desired-replicas", 4, True)

    pod.engines = [EngineState(waiting=40)]
    await scrape_all(app)  # the backend now says 8
    assert (await poll(keda, request))[1].metricValue == 4  # fresh for 1 s: the cached answer
    front_clock.now += 2
    assert (await poll(keda, request))[1].metricValue == 4  # stale: served, refresh started
    await wait_until(lambda: _cached_values(cache) == {8})
    assert (await poll(keda, request))[1].metricValue == 8


def _cached_values(cache: AnswerCache) -> set[int]:
    values = set()
    for (method, _), entry in cache._entries.items():
        if method == "GetMetrics" and isinstance(entry.answer, pb.GetMetricsResponse):
            values.add(entry.answer.metricValues[0].metricValue)
    return values


async def test_errors_come_back_with_the_backend_s_code_and_details(app, pods, front):
    keda, _ = front
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await keda.GetMetricSpec(ref("not-a-url"))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "scalerMetadata key 'endpoints'" in (bad.value.details() or "")
    pod = await pods()
    with pytest.raises(grpc.aio.AioRpcError) as early:
        await keda.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(pod.url),
                                                   metricName="desired-replicas"))
    assert early.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "no scrape has completed yet" in (early.value.details() or "")


async def test_an_answer_past_max_age_waits_for_the_backend_and_a_dead_one_is_unavailable(
        app, pods, front, front_clock):
    keda, _ = front
    pod = await pods()
    pod.engines = [EngineState(waiting=20)]
    request = ref(pod.url)
    await keda.GetMetricSpec(request)
    await scrape_all(app)
    assert (await poll(keda, request))[1].metricValue == 4
    await app.grpc_server.stop(0)  # the backend is gone
    front_clock.now += 11  # past max_age: never served; the backend is asked and fails
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await keda.IsActive(request)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # KEDA's fallback applies


async def test_stream_is_active_passes_through(app, pods, front):
    keda, _ = front
    pod = await pods()
    stream = keda.StreamIsActive(ref(pod.url))
    first = asyncio.ensure_future(stream.read())
    await wait_until(lambda: len(app.service.registry) == 1)
    await scrape_all(app)
    assert (await asyncio.wait_for(first, 5)).result is False
    pod.engines = [EngineState(waiting=3)]
    nxt = asyncio.ensure_future(stream.read())
    await scrape_all(app)
    assert (await asyncio.wait_for(nxt, 5)).result is True
    stream.cancel()


async def test_one_backend_call_however_many_wait(front_clock):
    calls = 0
    release = asyncio.Event()

    async def fetch() -> pb.IsActiveResponse:
        nonlocal calls
        calls += 1
        await release.wait()
        return pb.IsActiveResponse(result=True)

    cache = AnswerCache(clock=front_clock)
    waiting = [asyncio.ensure_future(cache.get(("IsActive", b"x"), fetch)) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    answers = await asyncio.gather(*waiting)
    assert calls == 1 and all(a.result for a in answers)
