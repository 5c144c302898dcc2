"""Tail latency of Python's two gRPC servers under KEDA-like load, answering a constant.

    python benchmarks/grpc_server_kinds.py            # about a minute

The same open-loop client as ``load_scale.py`` (GetMetrics at ``--rate`` RPC/s over 1,000
ScaledObjects whose metadata lists 8 pod URLs, one channel, its collector off during the
window) against a servicer of the externalscaler proto answering a constant, served by:

- ``grpc.aio``: the asyncio server the scaler uses (one thread runs handlers and, with the
  poller engine, hands every completion over from gRPC's polling thread);
- ``grpc`` sync: the thread-pool server (gRPC's C core does the transport in its own
  threads; handlers run in the pool).

Each server runs alone in its own process, in turn, ``--rounds`` times; nothing else runs. It
prints p50/p99 and the server's CPU per call, and the sync server's p99 as a ratio of the
asyncio one's measured in the same run. Why it matters: the front process's p99 at 1,000
workloads sits at the asyncio server's own floor (BENCHMARKS.md, "Load and scale").
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import sys
import time
from concurrent import futures
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc
from load_scale import ConstantScaler, _open_loop, _ref, pct

from scaler.keda.proto import externalscaler_pb2 as pb
from scaler.keda.proto import externalscaler_pb2_grpc as pb_grpc

WORKLOADS = 1000


class SyncConstantScaler(pb_grpc.ExternalScalerServicer):
    def GetMetrics(self, request: pb.GetMetricsRequest, context: Any) -> pb.GetMetricsResponse:
        return pb.GetMetricsResponse(metricValues=[
            pb.MetricValue(metricName=request.metricName, metricValue=3, metricValueFloat=3.0)])


def _serve(conn: Connection, kind: str, threads: int) -> None:
    """Serve, send the port, then on any message send the CPU seconds used since."""
    if kind == "sync":
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads))
        pb_grpc.add_ExternalScalerServicer_to_server(SyncConstantScaler(), server)  # type: ignore[no-untyped-call]
        conn.send(server.add_insecure_port("127.0.0.1:0"))
        server.start()
        cpu0 = time.process_time()
        conn.recv()
        conn.send(time.process_time() - cpu0)
        return

    async def serve_aio() -> None:
        server = grpc.aio.server()
        pb_grpc.add_ExternalScalerServicer_to_server(ConstantScaler(), server)  # type: ignore[no-untyped-call]
        conn.send(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        cpu0 = time.process_time()
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        conn.send(time.process_time() - cpu0)

    asyncio.run(serve_aio())


def _load(conn: Connection, port: int, rate: float, seconds: float) -> None:
    async def run() -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub: Any = pb_grpc.ExternalScalerStub(channel)  # type: ignore[no-untyped-call]
            refs = [_ref(w, 1) for w in range(WORKLOADS)]
            await _open_loop(stub, refs, rate, 1.0)  # warm the connection up
            conn.send(await _open_loop(stub, refs, rate, seconds))

    asyncio.run(run())


def measure(kind: str, args: argparse.Namespace) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, server CPU us per call) of one window."""
    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(there, kind, args.threads), daemon=True)
    server.start()
    port = here.recv()
    mine, theirs = ctx.Pipe()
    load = ctx.Process(target=_load, args=(theirs, port, args.rate, args.seconds))
    load.start()
    result = mine.recv()
    load.join()
    here.send("cpu")
    cpu = here.recv()
    server.join(5)
    lat = result["latencies"]
    if result["errors"]:
        print(f"  {kind}: errors {result['errors']}")
    return pct(lat, 0.5), pct(lat, 0.99), cpu / max(len(lat), 1) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8, help="sync server's pool size")
    args = parser.parse_args()
    p99: dict[str, list[float]] = {"aio": [], "sync": []}
    for round_ in range(args.rounds):
        for kind in ("aio", "sync"):
            p50, tail, cpu_us = measure(kind, args)
            p99[kind].append(tail)
            print(f"round {round_ + 1} {kind:4}: p50 {p50:.2f} ms, p99 {tail:.2f} ms, "
                  f"{cpu_us:.0f} us of server CPU per call", flush=True)
    aio, sync = statistics.median(p99["aio"]), statistics.median(p99["sync"])
    print(f"median p99: grpc.aio {aio:.2f} ms, sync {sync:.2f} ms; sync / aio = "
          f"{sync / aio:.2f}x at {args.rate:g} RPC/s")


if __name__ == "__main__":
    main()
