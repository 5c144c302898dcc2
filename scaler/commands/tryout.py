"""`scaler try`: the whole path on one machine in a few seconds, no cluster needed.

Starts two emulated vLLM pods (real HTTP servers serving real-format vLLM
metrics), starts the scaler's gRPC and HTTP servers on free loopback ports, and
plays KEDA: GetMetricSpec, GetMetrics and IsActive through the generated
client, while the emulated load goes idle -> busy -> overloaded -> idle; at the end it
reads the same decision from the metrics-api route with a bearer token made for this run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import secrets
import tempfile
from pathlib import Path

import aiohttp
import grpc

from scaler.commands.serve import start_app
from scaler.config.settings import ServiceConfig
from scaler.keda.proto import externalscaler_pb2 as pb
from scaler.keda.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.sim.emulation.engine_state import EngineState
from scaler.sim.emulation.pod_server import EmulatedVllmPod

# (label, waiting, running, KV-cache use) per pod, one phase after another.
PHASES = (
    ("idle", 0, 0, 0.0),
    ("busy", 2, 48, 0.62),
    ("overloaded", 14, 96, 0.97),
    ("idle again", 0, 0, 0.0),
)


async def run_tryout(*, interval_s: float = 0.5) -> int:
    with tempfile.TemporaryDirectory() as secret_dir:
        token = secrets.token_hex(16)  # what a Secret would hold; this run only
        token_file = Path(secret_dir) / "token"
        token_file.write_text(token + "\n")
        return await _tryout(interval_s, str(token_file), token)


async def _tryout(interval_s: float, token_file: str, token: str) -> int:
    config = ServiceConfig()
    config = dataclasses.replace(
        config,
        server=dataclasses.replace(config.server, host="127.0.0.1", grpc_port=0, http_port=0,
                                   grace_s=0, http_api_token_file=token_file),
        scrape=dataclasses.replace(config.scrape, interval_s=interval_s),
    )
    pods = [EmulatedVllmPod(), EmulatedVllmPod()]
    for pod in pods:
        await pod.start()
    app = await start_app(config)
    try:
        print(f"scaler: gRPC 127.0.0.1:{app.grpc_port}, HTTP 127.0.0.1:{app.http_port}")
        print(f"emulated vLLM pods: {', '.join(p.url for p in pods)}\n")
        request = pb.ScaledObjectRef(
            name="demo", namespace="default",
            scalerMetadata={"endpoints": ",".join(p.url for p in pods)})
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
            keda = pb_grpc.ExternalScalerStub(channel)  # type: ignore[no-untyped-call]
            for label, waiting, running, kv in PHASES:
                for pod in pods:
                    pod.engines = [EngineState(waiting=waiting, running=running,
                                               kv_cache_usage=kv)]
                await asyncio.sleep(interval_s * 2.5)  # let the background scrape see it
                await _poll(keda, request, label)
                for workload in app.service.registry:
                    if workload.decision is not None:
                        print(f"{'':>14}why: {workload.decision.reason}")
        url = (f"http://127.0.0.1:{app.http_port}/api/v1/namespaces/default/scaledobjects/demo"
               f"?endpoints={','.join(p.url for p in pods)}")
        bearer = {"Authorization": f"Bearer {token}"}  # KEDA's authMode: bearer
        async with aiohttp.ClientSession() as http, http.get(url, headers=bearer) as resp:
            print(f"\nmetrics-api JSON ({resp.status}): {json.dumps(await resp.json())[:300]}")
    finally:
        await app.stop()
        for pod in pods:
            await pod.stop()
    return 0


async def _poll(keda: pb_grpc.ExternalScalerStub, request: pb.ScaledObjectRef,
                label: str) -> None:
    spec = (await keda.GetMetricSpec(request)).metricSpecs[0]
    try:
        value = (await keda.GetMetrics(pb.GetMetricsRequest(
            scaledObjectRef=request, metricName=spec.metricName))).metricValues[0]
        active = (await keda.IsActive(request)).result
    except grpc.aio.AioRpcError as exc:
        print(f"{label:>12}: {exc.code().name}: {exc.details()}")
        return
    print(f"{label:>12}: GetMetrics {spec.metricName}={value.metricValueFloat:g} "
          f"(target {spec.targetSizeFloat:g}) -> HPA asks for "
          f"{math.ceil(value.metricValueFloat / spec.targetSizeFloat)} replica(s); "
          f"IsActive={active}")
