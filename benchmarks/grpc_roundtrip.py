"""KEDA poll round trips against the running scaler with many workloads registered.

    python benchmarks/grpc_roundtrip.py [--workloads 200] [--seconds 10] [--concurrency 16]

A server process runs the real scaler (gRPC + HTTP + background scraping of
emulated vLLM pods on loopback); this process plays KEDA: for random workloads it
calls GetMetricSpec, GetMetrics and IsActive, from `--concurrency` callers at
once, and records each call's latency. The same load is then run against a
baseline server in the same run: a bare grpc.aio servicer of the same proto
that answers constants, i.e. the cost of Python gRPC itself. Goals (issue #2):
p99 under 5 ms, at least 2,000 RPC/s on 2 cores.

A light load for the scaler: every workload lists one URL on 4 emulated pods, so it parses 40
pages a second, an eighth of 200 workloads of 8 pods. KEDA's latency as shipped, with that
scraping and the floor measured at the same time: ``keda_latency.py`` (issue 14).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import multiprocessing as mp
import random
import statistics
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc

from scaler.keda.proto import externalscaler_pb2 as pb
from scaler.keda.proto import externalscaler_pb2_grpc as pb_grpc


def _serve_pods(conn: Connection) -> None:
    """Emulated vLLM pods in their own process, as real pods are not in the scaler's."""

    async def serve() -> None:
        from scaler.sim.emulation.engine_state import EngineState
        from scaler.sim.emulation.pod_server import EmulatedVllmPod

        pods = [EmulatedVllmPod() for _ in range(4)]
        for i, pod in enumerate(pods):
            await pod.start()
            pod.engines = [EngineState(waiting=i, running=20 + i, kv_cache_usage=0.3 + 0.1 * i)]
        conn.send([p.url for p in pods])
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        for pod in pods:
            await pod.stop()

    asyncio.run(serve())


def _serve_scaler(conn: Connection, workloads: int) -> None:
    asyncio.run(_scaler_main(conn, workloads))


async def _scaler_main(conn: Connection, workloads: int) -> None:
    from scaler.commands.serve import start_app
    from scaler.config.settings import ServiceConfig

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    pods = ctx.Process(target=_serve_pods, args=(child,), daemon=True)
    pods.start()
    urls = parent.recv()
    config = ServiceConfig()
    config = dataclasses.replace(config, server=dataclasses.replace(
        config.server, host="127.0.0.1", grpc_port=0, http_port=0))
    app = await start_app(config)
    conn.send((app.grpc_port, urls))
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # wait for "stop"
    await app.stop()
    parent.send("stop")
    pods.join(10)


class ConstantScaler(pb_grpc.ExternalScalerServicer):
    """Baseline: the same proto answered with constants (no lookup, no state)."""

    async def GetMetricSpec(self, request: Any, context: Any) -> pb.GetMetricSpecResponse:
        return pb.GetMetricSpecResponse(
            metricSpecs=[pb.MetricSpec(metricName="desired-replicas", targetSize=1,
                                       targetSizeFloat=1.0)])

    async def GetMetrics(self, request: Any, context: Any) -> pb.GetMetricsResponse:
        return pb.GetMetricsResponse(
            metricValues=[pb.MetricValue(metricName="desired-replicas", metricValue=3,
                                         metricValueFloat=3.0)])

    async def IsActive(self, request: Any, context: Any) -> pb.IsActiveResponse:
        return pb.IsActiveResponse(result=True)


def _serve_baseline(conn: Connection) -> None:
    async def serve() -> None:
        server = grpc.aio.server()
        pb_grpc.add_ExternalScalerServicer_to_server(ConstantScaler(), server)  # type: ignore[no-untyped-call]
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        conn.send((port, []))
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        await server.stop(0)

    asyncio.run(serve())


@dataclasses.dataclass
class Result:
    rpcs: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.rpcs / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _refs(urls: list[str], workloads: int) -> list[pb.ScaledObjectRef]:
    if not urls:
        urls = ["http://127.0.0.1:1/metrics"]
    return [
        pb.ScaledObjectRef(name=f"model-{i}", namespace="bench", scalerMetadata={
            "endpoints": f"{urls[i % len(urls)]}?w={i}", "targetKvCacheUsage": "0.8"})
        for i in range(workloads)
    ]


async def _load(port: int, refs: list[pb.ScaledObjectRef], seconds: float,
                concurrency: int, rate: float) -> tuple[Result, Result]:
    """(closed loop: as fast as `concurrency` callers go; open loop: `rate` RPC/s paced)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.ExternalScalerStub(channel)  # type: ignore[no-untyped-call]
        for ref in refs:
            await stub.GetMetricSpec(ref)
        await _until_answered(stub, refs)
        rng = random.Random(7)
        closed = await _closed_loop(stub, refs, rng, seconds, concurrency)
        opened = await _open_loop(stub, refs, rng, seconds, rate)
        return closed, opened


async def _poll(stub: Any, ref: pb.ScaledObjectRef, latencies: list[float]) -> None:
    """One KEDA poll: GetMetricSpec, GetMetrics, IsActive, each timed."""
    for call, arg in (
        (stub.GetMetricSpec, ref),
        (stub.GetMetrics, pb.GetMetricsRequest(scaledObjectRef=ref,
                                               metricName="desired-replicas")),
        (stub.IsActive, ref),
    ):
        started = time.perf_counter()
        await call(arg)
        latencies.append((time.perf_counter() - started) * 1000)


async def _closed_loop(stub: Any, refs: list[pb.ScaledObjectRef], rng: random.Random,
                       seconds: float, concurrency: int) -> Result:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        while time.perf_counter() < deadline:
            await _poll(stub, rng.choice(refs), latencies)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return Result(len(latencies), time.perf_counter() - started, latencies)


async def _open_loop(stub: Any, refs: list[pb.ScaledObjectRef], rng: random.Random,
                     seconds: float, rate: float) -> Result:
    """Polls started on a fixed schedule (3 RPCs each), whatever the answers' speed."""
    latencies: list[float] = []
    period = 3 / rate
    started = time.perf_counter()
    tasks = []
    for i in range(int(seconds / period)):
        delay = started + i * period - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_poll(stub, rng.choice(refs), latencies)))
    await asyncio.gather(*tasks)
    return Result(len(latencies), time.perf_counter() - started, latencies)


async def _until_answered(stub: Any, refs: list[pb.ScaledObjectRef]) -> None:
    """Wait until every workload has had its first scrape (UNAVAILABLE before)."""
    async with asyncio.timeout(60):
        for ref in refs:
            while True:
                try:
                    await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref))
                    break
                except grpc.aio.AioRpcError as exc:
                    if exc.code() != grpc.StatusCode.UNAVAILABLE:
                        raise
                    await asyncio.sleep(0.05)


def _run(target: Any, args: tuple[Any, ...], workloads: int, seconds: float,
         concurrency: int, rate: float) -> tuple[Result, Result]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(child, *args))  # not daemonic: it has a child
    proc.start()
    port, urls = parent.recv()
    try:
        return asyncio.run(_load(port, _refs(urls, workloads), seconds, concurrency, rate))
    finally:
        parent.send("stop")
        proc.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=2000.0, help="open-loop RPC/s")
    args = parser.parse_args()
    load = (args.workloads, args.seconds, args.concurrency, args.rate)
    runs = {
        "baseline (constant servicer)": _run(_serve_baseline, (), *load),
        f"scaler ({args.workloads} workloads)": _run(_serve_scaler, (args.workloads,), *load),
    }
    print(f"closed loop: {args.concurrency} callers; open loop: {args.rate:g} RPC/s paced; "
          f"{args.seconds:g} s each; a poll = GetMetricSpec + GetMetrics + IsActive")
    for name, (closed, opened) in runs.items():
        print(f"{name:>30}: max {closed.rate:6.0f} RPC/s (p99 {closed.pct(0.99):5.2f} ms) | "
              f"at {opened.rate:5.0f} RPC/s: p50 {opened.pct(0.5):5.2f} ms, "
              f"p99 {opened.pct(0.99):5.2f} ms, mean {statistics.fmean(opened.latencies_ms):5.2f}")
    (base_closed, base_open), (closed, opened) = runs.values()
    print(f"scaler vs baseline: max throughput {closed.rate / base_closed.rate:.2f}x, "
          f"p99 at {args.rate:g} RPC/s {opened.pct(0.99) / base_open.pct(0.99):.2f}x")
    print(f"goals: p99 < 5 ms at >= 2000 RPC/s -> p99 {opened.pct(0.99):.2f} ms at "
          f"{opened.rate:.0f} RPC/s; max {closed.rate:.0f} RPC/s")


if __name__ == "__main__":
    main()
