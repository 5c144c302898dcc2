"""`scaler serve` as a user runs it: a real process, real ports, a clean SIGTERM exit."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys

import aiohttp
import grpc
import pytest

from scaler.keda.proto import externalscaler_pb2 as pb
from scaler.keda.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.sim.emulation.engine_state import EngineState


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("front_process", [False, True, None],
                         ids=["one process", "front process", "as shipped"])
async def test_serve_answers_keda_and_stops_on_sigterm(pods, tmp_path, front_process):
    """As shipped (no ``server.front_process`` in the file), KEDA is answered by the front
    process: in one process calls wait behind page parsing (BENCHMARKS.md, issue 14)."""
    pod = await pods()
    pod.engines = [EngineState(waiting=11)]
    config = tmp_path / "scaler.yaml"
    config.write_text("scrape:\n  interval_s: 0.2\n" + (
        "" if front_process is None else
        f"server:\n  front_process: {str(front_process).lower()}\n"))
    grpc_port, http_port = free_port(), free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scaler", "serve", "--config", str(config), "--host", "127.0.0.1",
        "--grpc-port", str(grpc_port), "--http-port", str(http_port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        await _wait_http(f"http://127.0.0.1:{http_port}/readyz")
        request = pb.ScaledObjectRef(name="so", namespace="ns",
                                     scalerMetadata={"endpoints": pod.url,
                                                     "policy": "reactive"})
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            keda = pb_grpc.ExternalScalerStub(channel)  # type: ignore[no-untyped-call]
            await keda.GetMetricSpec(request)
            value = await _first_value(keda, request)
        assert value == 3  # 11 waiting / 5 per replica
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, output.decode()
    assert b"shutting down" in output
    front = re.search(rb"listening on 127.0.0.1:\d+ in front process (\d+)", output)
    assert (front is not None) == (front_process is not False), output.decode()
    if front is not None:  # the front process ended with the scaling process
        with pytest.raises(ProcessLookupError):
            os.kill(int(front.group(1)), 0)


async def _wait_http(url: str) -> None:
    async with asyncio.timeout(20), aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


async def _first_value(keda, request) -> int:
    """Poll as KEDA does until the first scrape has landed (UNAVAILABLE before)."""
    async with asyncio.timeout(10):
        while True:
            try:
                reply = await keda.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=request))
                return int(reply.metricValues[0].metricValue)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE
                await asyncio.sleep(0.05)
