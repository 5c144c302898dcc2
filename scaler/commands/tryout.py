"""`scaler try`: the whole path on one machine in a few seconds, no cluster needed.

Starts two emulated vLLM pods (real HTTP servers serving real-format vLLM metrics), starts
the scaler's gRPC and HTTP servers on free loopback ports, and plays KEDA: GetMetricSpec,
GetMetrics and IsActive through the generated client, while the emulated load goes idle ->
busy -> overloaded -> idle; at the end it reads the same decision from the metrics-api route
with a bearer token made for this run.

Why the reactive policy: its answer follows the pods' gauges at once, so five seconds tell
the story (more replicas when overloaded, fewer when idle). The predictive planner learns
demand over minutes (a counter needs two scrapes, the forecaster a 5-minute step, and it
scales down only after a window); ``scaler demo`` shows it. Each phase waits for two scrape
rounds that started after the load changed (never a fixed sleep), so the answer is about it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path

import aiohttp
import grpc

from scaler.commands.serve import RunningApp, start_app
from scaler.config.settings import ServiceConfig
from scaler.keda.proto import externalscaler_pb2 as pb
from scaler.keda.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.sim.emulation.engine_state import EngineState
from scaler.sim.emulation.pod_server import EmulatedVllmPod

__all__ = ["METADATA", "PHASES", "run_tryout"]

# (label, waiting, running, KV-cache use) per pod, one phase after another.
PHASES = (
    ("idle", 0, 0, 0.0),
    ("busy", 2, 48, 0.62),
    ("overloaded", 14, 96, 0.97),
    ("idle again", 0, 0, 0.0),
)
METADATA = {"policy": "reactive", "targetQueuePerReplica": "5", "targetKvCacheUsage": "0.8",
            "minReplicas": "1", "maxReplicas": "10"}
PHASE_TIMEOUT_S = 10.0  # wall: two scrape rounds take about 2 x interval_s


async def run_tryout(*, interval_s: float = 0.2, echo: Callable[[str], None] = print) -> int:
    with tempfile.TemporaryDirectory() as secret_dir:
        token = secrets.token_hex(16)  # what a Secret would hold; this run only
        token_file = Path(secret_dir) / "token"
        token_file.write_text(token + "\n")
        return await _tryout(interval_s, str(token_file), token, echo)


async def _tryout(interval_s: float, token_file: str, token: str,
                  echo: Callable[[str], None]) -> int:
    config = ServiceConfig()
    config = dataclasses.replace(
        config,
        server=dataclasses.replace(config.server, host="127.0.0.1", grpc_port=0, http_port=0,
                                   grace_s=0, http_api_token_file=token_file,
                                   front_process=False),
        scrape=dataclasses.replace(config.scrape, interval_s=interval_s),
    )
    pods = [EmulatedVllmPod(), EmulatedVllmPod()]
    for pod in pods:
        await pod.start()
    app = await start_app(config)
    endpoints = ",".join(p.url for p in pods)
    try:
        echo(f"scaler: gRPC 127.0.0.1:{app.grpc_port}, HTTP 127.0.0.1:{app.http_port}")
        echo(f"emulated vLLM pods: {', '.join(p.url for p in pods)}")
        echo("policy: reactive (HPA-style): 5 waiting requests or 80% KV cache per replica, "
             "whichever asks for more; `scaler demo` shows the predictive planner\n")
        request = pb.ScaledObjectRef(name="demo", namespace="default",
                                     scalerMetadata={"endpoints": endpoints, **METADATA})
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
            keda = pb_grpc.ExternalScalerStub(channel)  # type: ignore[no-untyped-call]
            await keda.GetMetricSpec(request)  # registers the workload; scraping starts
            for label, waiting, running, kv in PHASES:
                for pod in pods:
                    pod.engines = [EngineState(waiting=waiting, running=running,
                                               kv_cache_usage=kv)]
                await _two_rounds(app)
                echo(f"{label:>12}: {len(pods)} pods, each {waiting} waiting, {running} "
                     f"running, KV cache {kv:.0%}")
                echo(await _poll(keda, request))
                for workload in app.service.registry:
                    if workload.decision is not None:
                        echo(f"{'':>14}why: {workload.decision.reason}")
        url = (f"http://127.0.0.1:{app.http_port}/api/v1/namespaces/default/scaledobjects/demo"
               f"?endpoints={endpoints}&" + "&".join(f"{k}={v}" for k, v in METADATA.items()))
        bearer = {"Authorization": f"Bearer {token}"}  # KEDA's authMode: bearer
        async with aiohttp.ClientSession() as http, http.get(url, headers=bearer) as resp:
            echo(f"\nmetrics-api JSON ({resp.status}):\n"
                 f"{json.dumps(await resp.json(), indent=2)}")
    finally:
        await app.stop()
        for pod in pods:
            await pod.stop()
    return 0


async def _two_rounds(app: RunningApp) -> None:
    """Wait for two decisions from now (the second from a round begun after the change)."""
    for workload in list(app.service.registry):
        for _ in range(2):
            await asyncio.wait_for(app.service.change_event(workload).wait(), PHASE_TIMEOUT_S)


async def _poll(keda: pb_grpc.ExternalScalerStub, request: pb.ScaledObjectRef) -> str:
    spec = (await keda.GetMetricSpec(request)).metricSpecs[0]
    try:
        value = (await keda.GetMetrics(pb.GetMetricsRequest(
            scaledObjectRef=request, metricName=spec.metricName))).metricValues[0]
        active = (await keda.IsActive(request)).result
    except grpc.aio.AioRpcError as exc:
        return f"{'':>14}{exc.code().name}: {exc.details()}"
    return (f"{'':>14}GetMetrics {spec.metricName}={value.metricValueFloat:g} (target "
            f"{spec.targetSizeFloat:g}) -> HPA asks for "
            f"{math.ceil(value.metricValueFloat / spec.targetSizeFloat)} replica(s); "
            f"IsActive={active}")
