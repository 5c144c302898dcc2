"""Operator limits on what callers can make the scaler hold: RESOURCE_EXHAUSTED naming the
setting, nothing registered, nothing scraped; and the gRPC server's own message and stream
limits (``server.grpc_max_message_bytes``, ``server.grpc_max_concurrent_streams``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import grpc
import pytest

from scaler.keda.proto import externalscaler_pb2 as pb
from tests.conftest import StartApp, scrape_all
from tests.listener import Listener

NS = "llm"
TOKEN = "limits-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def with_token(tmp_path: Path, config: str = "") -> str:
    """Config YAML turning the metrics-api route on with ``TOKEN`` (off without a token)."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    return f"server:\n  http_api_token_file: {token_file}\n{config}"


def ref(name: str = "llama", **metadata: str) -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name=name, namespace=NS, scalerMetadata=metadata)


async def exhausted(keda, request: pb.ScaledObjectRef, setting: str) -> None:
    for call in (keda.GetMetricSpec, keda.IsActive):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(request)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details()
        assert setting in info.value.details()


@pytest.mark.parametrize("front", [False, True], ids=["one process", "front process"])
async def test_past_max_workloads_nothing_is_registered(start: StartApp, front: bool) -> None:
    running = await start("workloads:\n  max_workloads: 3\n", front=front)
    async with Listener("127.0.0.1") as pod:
        for i in range(3):
            await running.keda.GetMetricSpec(ref(f"w{i}", endpoints=pod.url))
        await exhausted(running.keda, ref("w3", endpoints=pod.url), "workloads.max_workloads")
        assert sorted(w.key.name for w in running.service.registry) == ["w0", "w1", "w2"]
        await running.keda.GetMetricSpec(ref("w1", endpoints=pod.url))  # known ones still are
        await scrape_all(running.app)
        assert pod.accepted == 3


async def test_the_default_max_workloads_is_2000(start: StartApp, tmp_path: Path) -> None:
    running = await start(with_token(tmp_path))
    service = running.service
    for i in range(2000):
        service.resolve(NS, f"w{i}", {"endpoints": "http://127.0.0.1:1/metrics"})
    await exhausted(running.keda, ref("one-more", endpoints="http://127.0.0.1:1/metrics"),
                    "workloads.max_workloads")
    assert len(service.registry) == 2000
    async with aiohttp.ClientSession() as http:
        query = urlencode({"endpoints": "http://127.0.0.1:1/metrics"})
        async with http.get(f"http://127.0.0.1:{running.app.http_port}/api/v1/namespaces/"
                            f"{NS}/scaledobjects/one-more?{query}", headers=BEARER) as resp:
            assert resp.status == 429
            body = await resp.json()
    assert body["error"] == "resource_exhausted"
    assert "workloads.max_workloads" in body["message"]
    assert len(service.registry) == 2000


async def test_past_max_endpoints_nothing_is_registered_nor_fetched(start: StartApp) -> None:
    running = await start()
    async with Listener("127.0.0.1") as pod:
        urls = [f"http://127.0.0.1:{pod.port}/m{i}" for i in range(513)]  # default: 512
        await exhausted(running.keda, ref(endpoints=",".join(urls)), "workloads.max_endpoints")
        await exhausted(running.keda, ref(endpoints=",".join(urls[:400]),
                                          gpuEndpoints=",".join(urls[400:])),
                        "workloads.max_endpoints")
        assert len(running.service.registry) == 0
        await running.keda.GetMetricSpec(ref(endpoints=",".join(urls[:512])))
        assert len(running.service.registry) == 1


@pytest.mark.parametrize("front", [False, True], ids=["one process", "front process"])
async def test_past_max_metadata_bytes_nothing_is_registered(start: StartApp,
                                                             front: bool) -> None:
    running = await start(front=front)
    big = {"endpoints": "http://127.0.0.1:1/metrics", "modelName": "m" * 16_400}
    await exhausted(running.keda, ref(**big), "tenancy.max_metadata_bytes")
    assert len(running.service.registry) == 0


async def test_the_metrics_api_answers_413_past_max_metadata_bytes(start: StartApp,
                                                                   tmp_path: Path) -> None:
    small = await start(with_token(tmp_path, "tenancy:\n  max_metadata_bytes: 1024\n"))
    query = urlencode({"endpoints": "http://127.0.0.1:1/metrics", "modelName": "m" * 1100})
    async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{small.app.http_port}/api/v1/namespaces/{NS}/scaledobjects/"
            f"llama?{query}", headers=BEARER) as resp:
        assert resp.status == 413
        assert "tenancy.max_metadata_bytes" in (await resp.json())["message"]
    assert len(small.service.registry) == 0


@pytest.mark.parametrize("front", [False, True], ids=["one process", "front process"])
async def test_grpc_refuses_messages_over_grpc_max_message_bytes(
        start: StartApp, front: bool) -> None:
    running = await start("server:\n  grpc_max_message_bytes: 65536\n", front=front)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await running.keda.GetMetricSpec(ref(modelName="m" * 70_000))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(running.service.registry) == 0


async def test_grpc_holds_at_most_grpc_max_concurrent_streams_per_connection(
        start: StartApp) -> None:
    running = await start("server:\n  grpc_max_concurrent_streams: 2\n")
    async with Listener("127.0.0.1") as pod:
        streams = [running.keda.StreamIsActive(ref(f"s{i}", endpoints=pod.url))
                   for i in range(2)]
        reading = [asyncio.ensure_future(stream.read()) for stream in streams]
        await asyncio.sleep(0.2)  # both open, held (no decision yet)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await running.keda.GetMetricSpec(ref("third", endpoints=pod.url), timeout=0.5)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        for stream, read in zip(streams, reading, strict=True):
            stream.cancel()
            read.cancel()
        await asyncio.gather(*reading, return_exceptions=True)
