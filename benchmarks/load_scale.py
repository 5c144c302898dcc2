"""Load and scale: the scaler with 1,000 workloads of 8 emulated vLLM pods each.

    python benchmarks/load_scale.py            # 2-3 minutes
    python benchmarks/load_scale.py --quick    # smoke run, under a minute

Three processes, so that the scaler's CPU is measured alone:

- pods (``_load_pods.py``): every pod's ``/metrics`` page (vLLM 0.12, one engine, ~42 KiB,
  its own ``model_name`` per workload) at ``/pod/<i>/metrics`` on one loopback port, from
  pre-rendered pages whose counters grow every ``--refresh`` seconds;
- the scaler, in this process: the real service (gRPC, HTTP, one scrape loop per workload
  every 5 s) with a subclass that records when each scrape round started against when it
  was due (lag) and how long it took, plus a 50 ms timer measuring event-loop lag;
- KEDA, played by a load process over the real gRPC API: it registers the workloads
  (GetMetricSpec with static ``endpoints`` metadata, 8 URLs each), waits until each one
  answers, then sends GetMetrics open-loop at ``--rate`` RPC/s spread over all workloads,
  timing each call.

Stages, measured in the same run: the baseline (``--baseline`` workloads), the full state
(``--workloads``), then the full state after every workload's forecaster has 14 days of
5-minute history (the default ``predictive`` policy). Each stage: a scrape-only window (CPU
seconds per wall second of this process, pages/s, scrape lag, RSS), then a window under
gRPC load (latency p50/p99/max, CPU). The summary gives ratios against the baseline and
the capacity of one instance.

History: ``--warm-real`` workloads are warm-started for real (``DemandForecaster.warm_start``
with 14 days of 5-minute points, ~0.1 s each); the others are restored from the saved state
(``to_dict``/JSON/``from_dict``) of one of those, as a restart with persisted state would,
which builds the same structures in a tenth of the time. Each is then marked as just refitted
(``set_params`` with its own parameters) so the windows measure steady state, not the
refit every warm-started forecaster asks for at once; one refit's cost is measured apart.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import gc
import io
import json
import math
import multiprocessing as mp
import os
import pstats
import random
import statistics
import sys
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc
from _load_pods import POD_PATH, model_name, serve_pods

from scaler.commands.serve import RunningApp, start_app
from scaler.config.settings import ServiceConfig
from scaler.keda.front.link import FrontProcess
from scaler.keda.proto import externalscaler_pb2 as pb
from scaler.keda.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.model.forecast.forecaster import DemandForecaster
from scaler.model.predictive import FORECAST_STEP_S
from scaler.service.service import ScalerService
from scaler.service.workloads import Workload, WorkloadKey

PODS_PER_WORKLOAD = 8
HISTORY_DAYS = 14
LOOP_PROBE_S = 0.05
HEADROOM = 0.7  # share of one core a capacity figure may use
RPC_DEADLINE_S = 2.0  # the load process's deadline per GetMetrics


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- KEDA's side: the load process -------------------------------------------------------------


def _metadata(workload: int, pod_port: int) -> dict[str, str]:
    first = workload * PODS_PER_WORKLOAD
    urls = ",".join(f"w{workload}-p{j}=http://127.0.0.1:{pod_port}{POD_PATH.format(first + j)}"
                    for j in range(PODS_PER_WORKLOAD))
    return {"endpoints": urls, "modelName": model_name(workload)}


def _ref(workload: int, pod_port: int) -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name=f"model-{workload:04d}", namespace="bench",
                              scalerMetadata=_metadata(workload, pod_port))


class ConstantScaler(pb_grpc.ExternalScalerServicer):
    """The floor: a grpc.aio servicer of the same proto answering constants, doing nothing
    (all three calls of KEDA's poll, so benchmarks/keda_latency.py uses it too)."""

    async def GetMetricSpec(self, request: Any, context: Any) -> pb.GetMetricSpecResponse:
        return pb.GetMetricSpecResponse(metricSpecs=[
            pb.MetricSpec(metricName="desired-replicas", targetSize=1, targetSizeFloat=1.0)])

    async def GetMetrics(self, request: pb.GetMetricsRequest,
                         context: Any) -> pb.GetMetricsResponse:
        return pb.GetMetricsResponse(metricValues=[
            pb.MetricValue(metricName=request.metricName, metricValue=3, metricValueFloat=3.0)])

    async def IsActive(self, request: Any, context: Any) -> pb.IsActiveResponse:
        return pb.IsActiveResponse(result=True)


def constant_main(conn: Connection) -> None:
    async def serve() -> None:
        server = grpc.aio.server()
        pb_grpc.add_ExternalScalerServicer_to_server(ConstantScaler(), server)  # type: ignore[no-untyped-call]
        conn.send(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        await server.wait_for_termination()

    asyncio.run(serve())


def _keda_main(conn: Connection, grpc_port: int, pod_port: int, floor_port: int) -> None:
    asyncio.run(_keda(conn, grpc_port, pod_port, floor_port))


async def _keda(conn: Connection, grpc_port: int, pod_port: int, floor_port: int) -> None:
    """Commands: ("register", lo, hi) -> seconds; ("load", n, rate, seconds) -> dict;
    ("floor", n, rate, seconds) -> dict (the same load on the constant servicer); "stop"."""
    loop = asyncio.get_running_loop()
    refs: list[pb.ScaledObjectRef] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel, \
            grpc.aio.insecure_channel(f"127.0.0.1:{floor_port}") as floor_channel:
        stub: Any = pb_grpc.ExternalScalerStub(channel)  # type: ignore[no-untyped-call]
        floor: Any = pb_grpc.ExternalScalerStub(floor_channel)  # type: ignore[no-untyped-call]
        while True:
            message = await loop.run_in_executor(None, conn.recv)
            if message == "stop":
                return
            if message[0] == "register":
                _, lo, hi = message
                started = time.perf_counter()
                new = [_ref(w, pod_port) for w in range(lo, hi)]
                refs.extend(new)
                for i in range(0, len(new), 50):
                    await asyncio.gather(*(stub.GetMetricSpec(r) for r in new[i:i + 50]))
                await _until_answered(stub, new)
                conn.send(time.perf_counter() - started)
            elif message[0] == "load":
                _, n, rate, seconds = message
                conn.send(await _open_loop(stub, refs[:n], rate, seconds))
            elif message[0] == "floor":
                _, n, rate, seconds = message
                conn.send(await _open_loop(floor, refs[:n], rate, seconds))


async def _until_answered(stub: Any, refs: Sequence[pb.ScaledObjectRef]) -> None:
    """Until every workload has a decision (UNAVAILABLE before its first scrape)."""
    async def one(ref: pb.ScaledObjectRef) -> None:
        while True:
            try:
                await stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref))
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                await asyncio.sleep(0.5)

    async with asyncio.timeout(120):
        for i in range(0, len(refs), 50):
            await asyncio.gather(*(one(r) for r in refs[i:i + 50]))


async def _open_loop(stub: Any, refs: Sequence[pb.ScaledObjectRef], rate: float,
                     seconds: float) -> dict[str, Any]:
    """GetMetrics started on a fixed schedule over random workloads, whatever the answers'
    speed; latency is timed from each call's start."""
    rng = random.Random(11)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    requests = [pb.GetMetricsRequest(scaledObjectRef=r, metricName="desired-replicas")
                for r in refs]

    async def call(request: pb.GetMetricsRequest) -> None:
        started = time.perf_counter()
        try:
            await stub.GetMetrics(request, timeout=RPC_DEADLINE_S)
        except grpc.aio.AioRpcError as exc:
            errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
            return
        latencies.append((time.perf_counter() - started) * 1000.0)

    tasks: set[asyncio.Task[None]] = set()
    total = int(rate * seconds)
    slip = 0.0
    gc.collect()
    gc.disable()  # the instrument's own collector must not add to what it measures
    cpu0, started = time.process_time(), time.perf_counter()
    for i in range(total):
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0.001:
            await asyncio.sleep(delay)
        slip = max(slip, time.perf_counter() - due)
        task = asyncio.create_task(call(rng.choice(requests)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - started
    gc.enable()
    return {"latencies": latencies, "errors": errors, "rate": total / wall,
            "slip_ms": slip * 1000.0, "client_cpu": (time.process_time() - cpu0) / wall}


# -- the scaler's side -------------------------------------------------------------------------


class RecordingService(ScalerService):
    """The real service; each scrape round's start is compared with when it was due.

    The scrape loop (``WorkloadRunner.run``) sleeps ``interval - elapsed`` after a round (plus
    a random phase after the first), so from the third round on a round is due ``interval``
    after the previous one started; lag = start - due (an overrunning round counts as late).
    """

    def __init__(self, config: ServiceConfig) -> None:
        super().__init__(config)
        self._last_start: dict[WorkloadKey, tuple[int, float]] = {}
        self.lags: list[float] = []
        self.durations: list[float] = []
        self.pages_ok = 0
        self.rounds = 0

    def reset(self) -> None:
        self.lags, self.durations, self.pages_ok, self.rounds = [], [], 0, 0

    async def scrape(self, workload: Workload) -> None:
        start = self.clock.monotonic()
        count, previous = self._last_start.get(workload.key, (0, math.nan))
        if count >= 2:
            self.lags.append(start - previous - self.config.scrape.interval_s)
        self._last_start[workload.key] = (count + 1, start)
        await super().scrape(workload)
        self.durations.append(self.clock.monotonic() - start)
        self.rounds += 1
        self.pages_ok += sum(1 for pod in workload.pods.values()
                             if pod.last_ok_s is not None and pod.last_ok_s >= start)


class LoopProbe:
    """A timer every LOOP_PROBE_S: how late it fires is the event loop's lag."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.task = asyncio.create_task(self._run(), name="loop lag probe")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LOOP_PROBE_S)
            self.lags.append(loop.time() - before - LOOP_PROBE_S)


class GcPauses:
    """Pauses of the cyclic garbage collector (they stop the event loop), per generation."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses[info["generation"]].append(time.perf_counter() - self._started)

    def clear(self) -> None:
        for pauses in self.pauses.values():
            pauses.clear()

    def worst_ms(self) -> float:
        return max((max(p) for p in self.pauses.values() if p), default=0.0) * 1e3

    def summary(self) -> str:
        return ", ".join(f"gen{g} {len(p)}x max {max(p, default=0.0) * 1e3:.1f} ms"
                         for g, p in self.pauses.items())


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclasses.dataclass
class Stage:
    name: str
    workloads: int
    seconds: float = 0.0
    cpu: float = math.nan  # process CPU s per wall s, scraping only
    rss: float = math.nan
    pages_per_s: float = math.nan
    expected_pages_per_s: float = math.nan
    rounds_per_s: float = math.nan
    lag_ms: tuple[float, float, float] = (math.nan,) * 3  # p50, p99, max
    round_ms: tuple[float, float] = (math.nan,) * 2  # p50, p99
    loop_lag_ms: tuple[float, float] = (math.nan,) * 2  # p99, max
    gc_ms: float = math.nan  # worst cyclic-GC pause, scrape-only and gRPC windows
    gc_objects: int = 0  # objects tracked by the cyclic GC after the scrape window
    pods_cpu: float = math.nan
    pods_served_per_s: float = math.nan
    rpc_rate: float = math.nan
    rpc_ms: tuple[float, float, float] = (math.nan,) * 3  # p50, p99, max
    rpc_errors: dict[str, int] = dataclasses.field(default_factory=dict)
    floor_ms: tuple[float, float, float] = (math.nan,) * 3  # constant servicer, same load
    rpc_cpu: float = math.nan  # process CPU s per wall s, scraping + RPCs
    front_cpu: tuple[float, float] = (math.nan,) * 2  # front process: scrape window, gRPC
    front_rss: float = math.nan
    client_cpu: float = math.nan
    slip_ms: float = math.nan


class Bench:
    def __init__(self, args: argparse.Namespace, app: RunningApp, service: RecordingService,
                 pods: Connection, keda: Connection) -> None:
        self.args, self.app, self.service = args, app, service
        self.pods, self.keda = pods, keda
        self.probe = LoopProbe()
        self.gc = GcPauses()
        self.registered = 0

    async def ask(self, conn: Connection, message: object) -> Any:
        conn.send(message)
        return await asyncio.get_running_loop().run_in_executor(None, conn.recv)

    async def register(self, n: int) -> None:
        log(f"registering workloads {self.registered}..{n - 1} over gRPC "
            f"({(n - self.registered) * PODS_PER_WORKLOAD} pods)")
        took = await self.ask(self.keda, ("register", self.registered, n))
        self.registered = n
        log(f"  {n} workloads registered and answering after {took:.1f} s; "
            f"RSS {rss_mib():.0f} MiB")

    async def measure(self, stage: Stage) -> Stage:
        args, service = self.args, self.service
        log(f"{stage.name}: settling {args.settle:g} s")
        await asyncio.sleep(args.settle)
        log(f"{stage.name}: scraping only, {args.measure:g} s")
        service.reset()
        self.probe.lags.clear()
        self.gc.clear()
        pods0 = await self.ask(self.pods, "stats")
        profile = cProfile.Profile() if args.profile and stage.name == "full" else None
        front0 = self.front_cpu_s()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if profile is not None:
            profile.enable()
        await asyncio.sleep(args.measure)
        if profile is not None:
            profile.disable()
        cpu1, wall1 = time.process_time(), time.perf_counter()
        pods1 = await self.ask(self.pods, "stats")
        wall = wall1 - wall0
        front_scraping = (self.front_cpu_s() - front0) / wall
        stage.seconds = wall
        stage.cpu = (cpu1 - cpu0) / wall
        stage.rss = rss_mib()
        stage.pages_per_s = service.pages_ok / wall
        stage.rounds_per_s = service.rounds / wall
        interval = service.config.scrape.interval_s
        stage.expected_pages_per_s = stage.workloads * PODS_PER_WORKLOAD / interval
        stage.lag_ms = (pct(service.lags, 0.5) * 1e3, pct(service.lags, 0.99) * 1e3,
                        max(service.lags, default=math.nan) * 1e3)
        stage.round_ms = (pct(service.durations, 0.5) * 1e3,
                          pct(service.durations, 0.99) * 1e3)
        stage.loop_lag_ms = (pct(self.probe.lags, 0.99) * 1e3,
                             max(self.probe.lags, default=math.nan) * 1e3)
        stage.pods_served_per_s = (pods1[0] - pods0[0]) / wall
        stage.pods_cpu = (pods1[1] - pods0[1]) / wall
        log(f"  CPU {stage.cpu:.3f} s/s, RSS {stage.rss:.0f} MiB, pages {stage.pages_per_s:.0f}"
            f"/s of {stage.expected_pages_per_s:.0f} expected, scrape lag p50/p99/max "
            f"{stage.lag_ms[0]:.1f}/{stage.lag_ms[1]:.1f}/{stage.lag_ms[2]:.1f} ms, round p99 "
            f"{stage.round_ms[1]:.0f} ms, loop lag p99 {stage.loop_lag_ms[0]:.1f} ms; pods "
            f"process {stage.pods_served_per_s:.0f} pages/s at {stage.pods_cpu:.2f} CPU s/s")
        stage.gc_objects = len(gc.get_objects())
        log(f"  GC pauses: {self.gc.summary()}; {stage.gc_objects} objects tracked by the GC")
        if profile is not None:
            text = io.StringIO()
            pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(25)
            print(text.getvalue(), flush=True)
        log(f"{stage.name}: GetMetrics at {args.rate:g} RPC/s open loop, {args.rpc_seconds:g} s")
        front0 = self.front_cpu_s()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        result = await self.ask(self.keda, ("load", stage.workloads, args.rate,
                                            args.rpc_seconds))
        wall = time.perf_counter() - wall0
        stage.rpc_cpu = (time.process_time() - cpu0) / wall
        stage.front_cpu = (front_scraping, (self.front_cpu_s() - front0) / wall)
        stage.front_rss = self.front_rss_mib()
        lat = result["latencies"]
        stage.rpc_rate, stage.rpc_errors = result["rate"], result["errors"]
        stage.rpc_ms = (pct(lat, 0.5), pct(lat, 0.99), max(lat, default=math.nan))
        stage.client_cpu, stage.slip_ms = result["client_cpu"], result["slip_ms"]
        stage.gc_ms = self.gc.worst_ms()
        log(f"  {len(lat)} answers at {stage.rpc_rate:.0f} RPC/s: p50 {stage.rpc_ms[0]:.2f} ms, "
            f"p99 {stage.rpc_ms[1]:.2f} ms, max {stage.rpc_ms[2]:.1f} ms, errors "
            f"{stage.rpc_errors or 0}; scaler CPU {stage.rpc_cpu:.3f} s/s, client CPU "
            f"{stage.client_cpu:.2f} s/s, worst schedule slip {stage.slip_ms:.1f} ms")
        if self.front_pid() is not None:
            log(f"  front process: CPU {stage.front_cpu[0]:.3f} s/s scraping window, "
                f"{stage.front_cpu[1]:.3f} s/s gRPC window, RSS {stage.front_rss:.0f} MiB")
        log(f"  GC pauses (both windows): {self.gc.summary()}")
        floor = await self.ask(self.keda, ("floor", stage.workloads, args.rate,
                                           args.rpc_seconds))
        lat = floor["latencies"]
        stage.floor_ms = (pct(lat, 0.5), pct(lat, 0.99), max(lat, default=math.nan))
        log(f"  floor, the same load on a constant servicer: p50 {stage.floor_ms[0]:.2f} ms, "
            f"p99 {stage.floor_ms[1]:.2f} ms, max {stage.floor_ms[2]:.1f} ms, errors "
            f"{floor['errors'] or 0}")
        return stage

    def front_pid(self) -> int | None:
        server = self.app.grpc_server
        if isinstance(server, FrontProcess) and server.process is not None:
            return server.process.pid
        return None

    def front_cpu_s(self) -> float:
        """CPU seconds the front process has used (0 without one), from /proc."""
        pid = self.front_pid()
        if pid is None:
            return 0.0
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def front_rss_mib(self) -> float:
        pid = self.front_pid()
        if pid is None:
            return math.nan
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return math.nan

    async def warm_histories(self) -> dict[str, float]:
        """Every workload's forecaster gets 14 days of 5-minute points; RSS before/after."""
        args = self.args
        workloads = [w for w in self.service.registry if w.planner is not None]
        n_real = min(args.warm_real, len(workloads))
        points = HISTORY_DAYS * 86400 // int(FORECAST_STEP_S)
        end = self.service.clock.monotonic() - FORECAST_STEP_S
        times = [end - (points - 1 - j) * FORECAST_STEP_S for j in range(points)]
        rng = random.Random(5)
        out = {"rss_before": rss_mib(), "points": float(points)}
        log(f"history: warm-starting {n_real} forecasters with {points} points each "
            f"({HISTORY_DAYS} days of {FORECAST_STEP_S:g} s)")
        saved: list[str] = []
        warm_s: list[float] = []
        for i, workload in enumerate(workloads[:n_real]):
            base, amp = rng.uniform(1, 200), rng.uniform(0.2, 0.8)
            values = [max(0.0, base * (1 + amp * math.sin(2 * math.pi * j / 288 + i))
                          + rng.gauss(0, 0.1 * base)) for j in range(points)]
            forecaster = DemandForecaster(FORECAST_STEP_S)
            started = time.perf_counter()
            forecaster.warm_start(times, values)
            warm_s.append(time.perf_counter() - started)
            self._install(workload, forecaster, times[-1])
            if len(saved) < 20:
                saved.append(json.dumps(forecaster.to_dict()))
            await asyncio.sleep(0)  # each warm start blocks the loop; let scraping run
        out["rss_real"] = rss_mib()
        out["warm_start_s"] = statistics.median(warm_s) if warm_s else math.nan
        out["state_kib"] = len(saved[0]) / 1024 if saved else math.nan
        log(f"  median warm_start {out['warm_start_s'] * 1e3:.0f} ms (blocks the event loop), "
            f"to_dict as JSON {out['state_kib']:.0f} KiB; RSS {out['rss_before']:.0f} -> "
            f"{out['rss_real']:.0f} MiB")
        rest = workloads[n_real:]
        if rest:
            log(f"history: restoring {len(rest)} more from saved states (from_dict)")
        for i, workload in enumerate(rest):
            restored = DemandForecaster.from_dict(json.loads(saved[i % len(saved)]))
            self._install(workload, restored, times[-1])
            if i % 20 == 0:
                await asyncio.sleep(0)
        out["rss_after"] = rss_mib()
        out["n_real"], out["n_all"] = float(n_real), float(len(workloads))
        log(f"  RSS {out['rss_after']:.0f} MiB with {len(workloads)} histories")
        out.update(await self._refit_cost(workloads[:2]))
        return out

    @staticmethod
    def _install(workload: Workload, forecaster: DemandForecaster, last_s: float) -> None:
        assert workload.planner is not None
        forecaster.set_params(forecaster.params)  # as just refitted: see the module docstring
        workload.planner.forecaster = forecaster
        workload.planner.warm_started(last_s)

    async def _refit_cost(self, workloads: Sequence[Workload]) -> dict[str, float]:
        """What Forecasting.refit_forecast costs per workload: copy on the loop, fit in a
        thread (thread CPU time)."""
        copies, fits = [], []
        for workload in workloads:
            assert workload.planner is not None
            started = time.perf_counter()
            copy = DemandForecaster.from_dict(workload.planner.forecaster.to_dict())
            copies.append(time.perf_counter() - started)

            def fit(f: DemandForecaster = copy) -> float:
                cpu = time.thread_time()
                f.fit_params()
                return time.thread_time() - cpu

            fits.append(await asyncio.to_thread(fit))
        out = {"refit_copy_s": statistics.fmean(copies), "refit_fit_cpu_s": statistics.fmean(fits)}
        log(f"  one refit: copy {out['refit_copy_s'] * 1e3:.1f} ms on the loop + "
            f"{out['refit_fit_cpu_s']:.2f} CPU s in a thread (holding the GIL)")
        return out


# -- orchestration ------------------------------------------------------------------------------


async def _run(args: argparse.Namespace, pod_port: int, pods: Connection,
               ctx: Any) -> tuple[list[Stage], dict[str, float]]:
    config = ServiceConfig()
    config = dataclasses.replace(config, server=dataclasses.replace(
        config.server, host="127.0.0.1", grpc_port=0, http_port=0, front_process=args.front))
    service = RecordingService(config)
    app = await start_app(config, service)
    rss_empty = rss_mib()
    log(f"scaler started in this process (gRPC :{app.grpc_port}); RSS {rss_empty:.0f} MiB")
    parent, child = ctx.Pipe()
    floor_conn, floor_child = ctx.Pipe()
    constant = ctx.Process(target=constant_main, args=(floor_child,), daemon=True)
    constant.start()
    floor_port = floor_conn.recv()
    keda = ctx.Process(target=_keda_main, args=(child, app.grpc_port, pod_port, floor_port),
                       daemon=True)
    keda.start()
    bench = Bench(args, app, service, pods, parent)
    stages: list[Stage] = []
    try:
        await bench.register(args.baseline)
        stages.append(await bench.measure(Stage("baseline", args.baseline)))
        await bench.register(args.workloads)
        stages.append(await bench.measure(Stage("full", args.workloads)))
        history = await bench.warm_histories()
        stages.append(await bench.measure(Stage("full + 14 d history", args.workloads)))
        history["rss_empty"] = rss_empty
        return stages, history
    finally:
        parent.send("stop")
        keda.join(10)
        bench.probe.task.cancel()
        constant.terminate()
        await app.stop()


def _ms(values: Sequence[float], digits: int = 1) -> str:
    return "/".join(f"{v:.{digits}f}" for v in values)


def report(args: argparse.Namespace, stages: list[Stage], history: dict[str, float]) -> None:
    base, full, warm = stages
    print()
    front = ", front process" if args.front else ""
    print(f"## Load and scale ({args.workloads} workloads{front} x {PODS_PER_WORKLOAD} pods, "
          f"scrape every 5 s, GetMetrics at {args.rate:g} RPC/s)")
    print()
    print("| state | pages/s (expected) | scaler CPU s/s, scraping | with gRPC load | RSS MiB "
          "| scrape lag p50/p99/max ms | round p50/p99 ms | loop lag p99/max ms "
          "| worst GC pause ms | RPC/s | GetMetrics p50/p99/max ms | floor p50/p99/max ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for s in stages:
        errors = f" ({sum(s.rpc_errors.values())} errors)" if s.rpc_errors else ""
        print(f"| {s.name}: {s.workloads} workloads | {s.pages_per_s:.0f} "
              f"({s.expected_pages_per_s:.0f}) | {s.cpu:.3f} | {s.rpc_cpu:.3f} | {s.rss:.0f} "
              f"| {_ms(s.lag_ms)} | {_ms(s.round_ms, 0)} | {_ms(s.loop_lag_ms)} "
              f"| {s.gc_ms:.0f} | {s.rpc_rate:.0f}{errors} | {_ms(s.rpc_ms, 2)} "
              f"| {_ms(s.floor_ms, 2)} |")
    for s in (full, warm):
        print(f"| ratio {s.name} / baseline | {s.pages_per_s / base.pages_per_s:.2f}x "
              f"| {s.cpu / base.cpu:.2f}x | {s.rpc_cpu / base.rpc_cpu:.2f}x "
              f"| {s.rss / base.rss:.2f}x | p99 {s.lag_ms[1] / base.lag_ms[1]:.2f}x "
              f"| p99 {s.round_ms[1] / base.round_ms[1]:.2f}x "
              f"| p99 {s.loop_lag_ms[0] / base.loop_lag_ms[0]:.2f}x "
              f"| {s.gc_ms / base.gc_ms:.2f}x | | p99 {s.rpc_ms[1] / base.rpc_ms[1]:.2f}x "
              f"| p99 vs floor {s.rpc_ms[1] / s.floor_ms[1]:.2f}x |")
    print()
    extra = full.workloads - base.workloads
    per_workload_cpu = (full.cpu - base.cpu) / extra
    fixed_cpu = max(0.0, base.cpu - per_workload_cpu * base.workloads)
    per_workload_mib = (full.rss - base.rss) / extra
    per_workload_objects = (full.gc_objects - base.gc_objects) / extra
    per_page_cpu = max(s.cpu / s.pages_per_s for s in (base, full))
    interval = 5.0
    n_real, n_all = history["n_real"], history["n_all"]
    real_mib = (history["rss_real"] - history["rss_before"]) / n_real if n_real else math.nan
    all_mib = (history["rss_after"] - history["rss_before"]) / n_all if n_all else math.nan
    capacity = HEADROOM / (per_page_cpu * PODS_PER_WORKLOAD / interval)
    rpc_per_workload = (full.rpc_cpu - full.cpu) / full.rpc_rate if full.rpc_rate else math.nan
    print(f"- Pods process: {full.pods_served_per_s:.0f} pages/s served at "
          f"{full.pods_cpu:.2f} CPU s/s (kept up: {full.pages_per_s:.0f} of "
          f"{full.expected_pages_per_s:.0f} expected pages/s scraped). Load process: "
          f"{full.client_cpu:.2f} CPU s/s, worst schedule slip {full.slip_ms:.1f} ms.")
    print(f"- CPU per workload (8 pods every 5 s): {per_workload_cpu * 1e3:.2f} ms per second "
          f"(marginal, {base.workloads} -> {full.workloads}); fixed {fixed_cpu:.3f} s/s; "
          f"per page scraped {per_page_cpu * 1e3:.2f} ms (worst stage). gRPC: "
          f"{rpc_per_workload * 1e6:.0f} us of CPU per GetMetrics answered. GC-tracked objects: "
          f"{per_workload_objects:.0f} per workload (gen2 pause {base.gc_ms:.0f} -> "
          f"{full.gc_ms:.0f} ms).")
    print(f"- Memory: {history['rss_empty']:.0f} MiB empty; {per_workload_mib * 1024:.0f} "
          f"KiB per workload scraped (marginal RSS); 14 days of history: "
          f"+{real_mib:.2f} MiB per workload warm-started ({n_real:.0f}), "
          f"+{all_mib:.2f} MiB per workload over all {n_all:.0f} "
          f"(RSS {history['rss_before']:.0f} -> {history['rss_after']:.0f} MiB); saved state "
          f"{history['state_kib']:.0f} KiB of JSON per workload.")
    print(f"- Warm start: {history['warm_start_s'] * 1e3:.0f} ms per workload on the event loop "
          f"({history['points']:.0f} points); one refit: {history['refit_copy_s'] * 1e3:.1f} ms "
          f"copy on the loop + {history['refit_fit_cpu_s']:.2f} CPU s in a thread.")
    print(f"- Capacity at {HEADROOM:.0%} of one core (the event loop is one thread): about "
          f"{capacity:.0f} workloads of {PODS_PER_WORKLOAD} pods at a 5 s scrape interval "
          f"(memory with history: {capacity * (per_workload_mib + all_mib):.0f} MiB "
          f"+ {history['rss_empty']:.0f} MiB).")
    if args.front:
        print("- Front process (server.front_process): CPU s/s scraping window / gRPC window: "
              + "; ".join(f"{s.name} {s.front_cpu[0]:.3f}/{s.front_cpu[1]:.3f}" for s in stages)
              + f"; RSS {full.front_rss:.0f} MiB. The scaler CPU columns are the scaling "
              "process alone.")
    print(f"- Goal GetMetrics p99 < 5 ms at {args.rate:g} RPC/s with {full.workloads} workloads: "
          f"{'met' if full.rpc_ms[1] < 5 else 'NOT met'} ({full.rpc_ms[1]:.2f} ms; with history "
          f"{warm.rpc_ms[1]:.2f} ms). The same client against a constant servicer at the same "
          f"time (the floor of Python gRPC on this machine): p99 {full.floor_ms[1]:.2f} ms.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 100 workloads (baseline 20), short windows")
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--baseline", type=int, default=200)
    parser.add_argument("--rate", type=float, default=2000.0, help="GetMetrics RPC/s, paced")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument("--measure", type=float, default=15.0, help="scrape-only window, s")
    parser.add_argument("--rpc-seconds", type=float, default=8.0, help="gRPC window, s")
    parser.add_argument("--warm-real", type=int, default=100,
                        help="forecasters warm-started for real (the rest restored)")
    parser.add_argument("--refresh", type=float, default=5.0, help="pod page refresh, s")
    parser.add_argument("--engines", type=int, default=1, help="vLLM engines per pod page")
    parser.add_argument("--front", action="store_true",
                        help="server.front_process: KEDA served by a front process")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the scaler's thread in the full stage's scrape window")
    args = parser.parse_args()
    if args.quick:
        args.workloads, args.baseline = 100, 20
        args.settle, args.measure, args.rpc_seconds, args.warm_real = 5.0, 10.0, 5.0, 20
    if not 0 < args.baseline < args.workloads:
        parser.error("--baseline must be between 0 and --workloads")
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    budget = 3 * (args.settle + args.measure + args.rpc_seconds) + 240 + args.workloads * 0.2
    variants = math.ceil(budget / args.refresh) + 2
    log(f"pods process: rendering {variants} page versions of 8 engine shapes for "
        f"{args.workloads * PODS_PER_WORKLOAD} pods")
    pods = ctx.Process(target=serve_pods, daemon=True, args=(
        child, args.workloads, PODS_PER_WORKLOAD, args.engines, variants, args.refresh, 0))
    pods.start()
    pod_port = parent.recv()
    log(f"pods listening on 127.0.0.1:{pod_port}")
    try:
        stages, history = asyncio.run(_run(args, pod_port, parent, ctx))
    finally:
        parent.send("stop")
        pods.join(10)
    report(args, stages, history)


if __name__ == "__main__":
    main()
