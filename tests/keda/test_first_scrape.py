"""A new workload's first call waits for its first scrape round (at most ``scrape.timeout_s``),
through the generated client against emulated vLLM pods, in one process and in the front, and
on the metrics-api route.

Here the service runs its own scrape loops (``background``), as in production: KEDA's first
call registers the workload and its first round starts at once. Answered before that round,
every new workload and every restart would cost KEDA a failed poll (UNAVAILABLE), a Warning
event and a step toward the fallback.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import grpc
import pytest

from scaler.commands.serve import RunningApp, start_app
from scaler.keda.proto import externalscaler_pb2 as pb
from scaler.keda.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.service.service import ScalerService
from scaler.sim.emulation.engine_state import EngineState
from tests.conftest import make_config

TIMEOUT_S = 0.5
StartApp = Callable[[bool], Awaitable[RunningApp]]


TOKEN = "5b1e0c9a7d3f4e2a8c6b0d1f3e5a7c9b"


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[StartApp]:
    started: list[RunningApp] = []
    token_file = tmp_path / "api-token"
    token_file.write_text(TOKEN)

    async def make(front: bool) -> RunningApp:
        config = make_config({"front_process": front, "http_api_token_file": str(token_file)},
                             timeout_s=TIMEOUT_S)
        started.append(await start_app(config, ScalerService(config)))  # scrape loops run
        return started[-1]

    yield make
    for app in started:
        await app.stop()


@pytest.mark.parametrize("front", [False, True], ids=["one process", "front process"])
async def test_the_first_call_is_answered_from_the_first_scrape(start: StartApp, pods,
                                                                front: bool) -> None:
    app = await start(front)
    a, b = await pods(), await pods()
    for pod in (a, b):
        pod.engines = [EngineState(waiting=10, running=40, kv_cache_usage=0.5)]
    request = pb.ScaledObjectRef(name="llama", namespace="llm", scalerMetadata={
        "endpoints": f"{a.url},{b.url}", "policy": "reactive"})
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        keda = pb_grpc.ExternalScalerStub(channel)  # type: ignore[no-untyped-call]
        # KEDA's very first call about it: no UNAVAILABLE, the first round's decision.
        value = (await keda.GetMetrics(pb.GetMetricsRequest(
            scaledObjectRef=request, metricName="desired-replicas"))).metricValues[0]
        assert value.metricValue == 4  # 20 waiting / 5 per replica
        assert (await keda.IsActive(request)).result is True


async def test_the_metrics_api_route_answers_from_the_first_scrape(start: StartApp,
                                                                    pods) -> None:
    app = await start(False)
    pod = await pods()
    pod.engines = [EngineState(waiting=15, running=40, kv_cache_usage=0.5)]
    url = (f"http://127.0.0.1:{app.http_port}/api/v1/namespaces/llm/scaledobjects/llama"
           f"?endpoints={pod.url}&policy=reactive")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    # KEDA's metrics-api trigger's very first poll: the first round's decision, not a 503.
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["desiredReplicas"] == 3  # 15 waiting / 5 per replica


@pytest.mark.parametrize("front", [False, True], ids=["one process", "front process"])
async def test_the_wait_is_bounded_by_the_scrape_timeout(start: StartApp, pods,
                                                         front: bool) -> None:
    app = await start(front)
    pod = await pods()
    pod.fault = "hang"
    request = pb.ScaledObjectRef(name="stuck", namespace="llm",
                                 scalerMetadata={"endpoints": pod.url})
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        keda = pb_grpc.ExternalScalerStub(channel)  # type: ignore[no-untyped-call]
        started = time.perf_counter()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await keda.IsActive(request)
        took_s = time.perf_counter() - started
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    details = info.value.details() or ""
    # The page's timeout and the wait are the same setting: whichever ends first says why.
    assert "no scrape has completed yet" in details or "could not be fetched" in details
    # It waited for the round (a guard against waiting for nothing), and no longer than the
    # page's timeout plus slack for a loaded machine: not the front's ask timeout (2 s).
    assert TIMEOUT_S * 0.9 <= took_s < TIMEOUT_S + 1.4, took_s
