"""The loop of `scaler demo`: emulated pods, cluster, KEDA and HPA around the live service.

`scaler demo` (:mod:`scaler.commands.demo`) starts the service and hands its ports to this loop,
which plays the cluster side:

- **Time**: a fixed-step loop. Each step is ``sim_step_s`` simulated seconds (15 s divided by
  a whole number, so KEDA polls fall exactly on the 15 s grid) and ``sim_step_s / speed`` wall
  seconds. Simulated time is counted in steps, never read from the wall clock, so a run's
  decisions do not depend on timing jitter; the wall clock only paces the loop
  (``asyncio.sleep`` to each step's deadline; a late step is not made up for in sim time).
- **Fleet**: ``FluidFleet`` (:mod:`scaler.model.queueing`) stepped once per step with the
  number of READY replicas. Its per-replica load (waiting, running, KV-cache use) is written
  into every ready pod's ``EngineState``, the token and request counters advance with what was
  served, and a few TTFT observations per step spread over the tick's p50/p95/p99 go into each
  pod's histograms, so every signal the service reads is live.
- **Cluster**: the replay's ``Cluster`` (pod start-up 180 s, node start-up 900 s, simulated)
  with ``ClusterAutoscaler`` for nodes, started warm with the replicas the first minute needs.
  Each READY replica is one ``EmulatedVllmPod`` (a real aiohttp server serving vLLM 0.12
  ``/metrics``): started when the replica becomes ready, stopped when it is removed.
- **KEDA + HPA**: every 15 simulated seconds GetMetricSpec, GetMetrics and IsActive through
  the generated gRPC client for the ScaledObject ``default/demo``, whose ``endpoints`` are the
  ready pods' URLs at that moment. UNAVAILABLE is counted and leaves the replica count alone
  (KEDA before its fallback applies). The metric goes through the emulated
  ``HorizontalPodAutoscaler`` (default behaviour) into ``Cluster.scale_replicas``; nodes follow
  from ``ClusterAutoscaler``. One ``StreamIsActive`` is held in the background (``external-push``)
  and its messages are counted. KEDA restarts a ScaledObject's scalers when its trigger
  metadata changes, so the stream is re-opened with the new metadata whenever the endpoints
  change.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from prometheus_client import CollectorRegistry

from scaler.keda.proto import externalscaler_pb2 as pb
from scaler.keda.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.model.profile import ReplicaProfile
from scaler.model.queueing import FluidFleet, FluidTick
from scaler.sim.cluster import Cluster, ClusterCounts
from scaler.sim.emulation.pod_server import EmulatedVllmPod
from scaler.sim.hpa import HorizontalPodAutoscaler
from scaler.sim.policies import ClusterAutoscaler
from scaler.sim.replay import ReplaySettings, initial_replicas
from scaler.sim.results import DecisionRow, ReplayResult
from scaler.sim.traces import RateTrace

__all__ = ["DemoLog", "DemoLoop", "Keda", "Plan", "Pods", "make_plan"]

POLICY = "reactive (live service)"
WALL_STEP_S = 0.1  # nominal wall seconds per loop step
KEDA_INTERVAL_S = 15.0  # simulated seconds between KEDA/HPA polls
PROGRESS_EVERY_S = 300.0  # simulated
POD_STARTUP_S = 180.0
NODE_STARTUP_S = 900.0
GPUS_PER_REPLICA = 1
GPUS_PER_NODE = 8
MIN_REPLICAS = 1
MAX_REPLICAS = 24
TARGET_KV_CACHE_USAGE = "0.1"
VLLM_VERSION = "0.12"
RPC_TIMEOUT_S = 5.0
TTFT_LEVELS = tuple((i + 0.5) / 10 for i in range(10))  # observations per pod and step


@dataclass
class DemoLog:
    """What happened during a demo run, beyond the ReplayResult (tests and the closing block).

    Times are simulated seconds from the start. ``registry`` is the running service's
    Prometheus registry (set once the service is up; still readable after the run).
    """

    grpc_port: int = 0
    http_port: int = 0
    registry: CollectorRegistry | None = None
    polls: int = 0
    unavailable: int = 0
    get_metrics_ok: float = 0.0  # scaler_rpc_requests_total{GetMetrics,OK}, read before stop
    asks: list[tuple[float, int, int]] = field(default_factory=list)  # (time, from, to)
    pod_starts: list[tuple[float, str]] = field(default_factory=list)  # (time, replica id)
    pod_stops: list[tuple[float, str]] = field(default_factory=list)
    stream_opens: int = 0
    stream_messages: int = 0
    stream_error: str | None = None
    wall_elapsed_s: float = 0.0


@dataclass(frozen=True)
class Plan:
    """The loop's fixed steps: sim and wall seconds per step, steps per poll, step count."""

    speed: float
    duration_s: float  # simulated
    steps_per_poll: int
    steps: int

    @property
    def sim_step_s(self) -> float:
        return KEDA_INTERVAL_S / self.steps_per_poll

    @property
    def wall_step_s(self) -> float:
        return self.sim_step_s / self.speed


def make_plan(wall_s: float, speed: float) -> Plan:
    if not (math.isfinite(wall_s) and wall_s > 0):
        raise ValueError(f"wall_s (--seconds) must be a finite number > 0, got {wall_s!r}")
    if not (math.isfinite(speed) and speed > 0):
        raise ValueError(f"speed (--speed) must be a finite number > 0, got {speed!r}")
    per_poll = max(1, round(KEDA_INTERVAL_S / (WALL_STEP_S * speed)))
    duration = wall_s * speed
    steps = max(1, math.ceil(duration / (KEDA_INTERVAL_S / per_poll) - 1e-9))
    return Plan(speed, duration, per_poll, steps)


# --------------------------------------------------------------------------- pods


class Pods:
    """One emulated vLLM pod per ready replica, fed from the fluid fleet's ticks."""

    def __init__(self, profile: ReplicaProfile, log: DemoLog) -> None:
        self.profile = profile
        self.log = log
        self.by_id: dict[str, EmulatedVllmPod] = {}
        self.leaving: list[EmulatedVllmPod] = []

    def __len__(self) -> int:
        return len(self.by_id)

    @property
    def endpoints(self) -> str:
        return ",".join(pod.url for pod in self.by_id.values())

    async def sync(self, ready_ids: list[str], now_s: float) -> None:
        """Start pods for newly ready replicas; set aside those of removed ones.

        A removed replica serves no more, but its page stays up (frozen, like a terminating
        pod finishing its requests) until the next poll has taken it out of ``endpoints``;
        stopping it at once would have the service scrape a closed port until then.
        """
        wanted = set(ready_ids)
        for rid in [r for r in self.by_id if r not in wanted]:
            self.leaving.append(self.by_id.pop(rid))
            self.log.pod_stops.append((now_s, rid))
        for rid in ready_ids:
            if rid not in self.by_id:
                pod = EmulatedVllmPod(version=VLLM_VERSION)
                await pod.start()
                self.by_id[rid] = pod
                self.log.pod_starts.append((now_s, rid))

    async def retire(self) -> None:
        """Stop the pods set aside (call once ``endpoints`` without them reached the service)."""
        leaving, self.leaving = self.leaving, []
        await asyncio.gather(*(pod.stop() for pod in leaving), return_exceptions=True)

    def serve(self, tick: FluidTick, prompt: float, output: float) -> None:
        """Write one tick's load, served requests and TTFTs into every ready pod."""
        if not self.by_id:
            return
        served = tick.served / len(self.by_id)
        ttfts = _ttft_samples(tick) if served > 0 else []
        decode_s = self.profile.decode_step_s(tick.load.running,
                                              tick.load.running * (prompt + output / 2))
        prefill_s = self.profile.prefill_s(prompt)
        for pod in self.by_id.values():
            engine = pod.engines[0]
            engine.waiting = round(tick.load.waiting)
            engine.running = round(tick.load.running)
            engine.kv_cache_usage = tick.load.kv_cache_usage
            engine.prompt_tokens += served * prompt
            engine.generation_tokens += served * output
            finished = engine.request_success.get("stop", 0.0) + served
            for ttft in ttfts:
                engine.record_request(
                    prompt_tokens=round(prompt), generation_tokens=round(output),
                    queue_s=max(0.0, ttft - prefill_s - decode_s), ttft_s=ttft,
                    e2e_s=ttft + output * decode_s)
            engine.request_success["stop"] = finished  # the true count, not the samples

    async def stop_all(self) -> None:
        self.leaving += self.by_id.values()
        self.by_id = {}
        await self.retire()


def _ttft_samples(tick: FluidTick) -> list[float]:
    """TTFTs at ``TTFT_LEVELS``: p50 below the median, linear between p50, p95 and p99."""
    p50, p95, p99 = tick.ttft_p50_s, tick.ttft_p95_s, tick.ttft_p99_s
    samples = []
    for q in TTFT_LEVELS:
        if q <= 0.5:
            value = p50
        elif q <= 0.95:
            value = p50 + (p95 - p50) * (q - 0.5) / 0.45
        else:
            value = p95 + (p99 - p95) * (q - 0.95) / 0.04
        samples.append(value)
    return [v for v in samples if math.isfinite(v)]


# --------------------------------------------------------------------------- KEDA


class Keda:
    """KEDA's side of the external scaler protocol, through the generated client."""

    def __init__(self, stub: pb_grpc.ExternalScalerStub, log: DemoLog) -> None:
        self.stub = stub
        self.log = log
        self._stream: asyncio.Task[None] | None = None
        self._stream_metadata: dict[str, str] | None = None

    async def poll(self, ref: pb.ScaledObjectRef) -> tuple[float, float] | None:
        """GetMetricSpec, GetMetrics, IsActive: (metric value, target), None on UNAVAILABLE."""
        self.log.polls += 1
        spec = (await self.stub.GetMetricSpec(ref, timeout=RPC_TIMEOUT_S)).metricSpecs[0]
        try:
            metrics = await self.stub.GetMetrics(
                pb.GetMetricsRequest(scaledObjectRef=ref, metricName=spec.metricName),
                timeout=RPC_TIMEOUT_S)
            await self.stub.IsActive(ref, timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            self.log.unavailable += 1
            return None
        return metrics.metricValues[0].metricValueFloat, spec.targetSizeFloat

    async def follow(self, ref: pb.ScaledObjectRef) -> None:
        """Hold a StreamIsActive on ``ref``'s metadata (re-opened when it changes)."""
        metadata = dict(ref.scalerMetadata)
        if metadata == self._stream_metadata:
            return
        await self.close()
        self._stream_metadata = metadata
        self.log.stream_opens += 1
        self._stream = asyncio.create_task(self._hold(ref), name="demo StreamIsActive")

    async def _hold(self, ref: pb.ScaledObjectRef) -> None:
        try:
            async for _ in self.stub.StreamIsActive(ref):
                self.log.stream_messages += 1
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                self.log.stream_error = f"{exc.code().name}: {exc.details()}"

    async def close(self) -> None:
        task, self._stream = self._stream, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# --------------------------------------------------------------------------- the loop


class DemoLoop:
    """The simulation state and one step of it; ``run_demo`` owns the servers around it."""

    def __init__(self, plan: Plan, trace: RateTrace, pods: Pods, keda: Keda,
                 echo: Callable[[str], None], log: DemoLog) -> None:
        self.plan, self.trace, self.pods, self.keda = plan, trace, pods, keda
        self.echo, self.log = echo, log
        self.profile = pods.profile
        self.settings = ReplaySettings(pod_startup_s=POD_STARTUP_S, node_startup_s=NODE_STARTUP_S,
                                       gpus_per_replica=GPUS_PER_REPLICA,
                                       gpus_per_node=GPUS_PER_NODE)
        self.start_replicas = initial_replicas(trace, self.settings, self.profile)
        self.cluster = Cluster(pod_startup_s=POD_STARTUP_S, node_startup_s=NODE_STARTUP_S,
                               gpus_per_replica=GPUS_PER_REPLICA, gpus_per_node=GPUS_PER_NODE)
        self.cluster.start_warm(replicas=self.start_replicas, nodes=0)
        self.autoscaler = ClusterAutoscaler()
        self.hpa = HorizontalPodAutoscaler(min_replicas=MIN_REPLICAS, max_replicas=MAX_REPLICAS)
        self.fleet = FluidFleet(self.profile, tick_s=plan.sim_step_s,
                                slo_ttft_s=self.settings.slo_ttft_s)
        self.rows: list[DecisionRow] = []
        self.missed = 0.0
        self.scale_events = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        await self.pods.sync(self.cluster.ready_ids(0.0), 0.0)
        started = loop.time()
        for i in range(self.plan.steps):
            await self.step(i)
            await asyncio.sleep(max(0.0, started + (i + 1) * self.plan.wall_step_s - loop.time()))
        self._close_row()
        self._progress(self.plan.steps * self.plan.sim_step_s)

    async def step(self, i: int) -> None:
        now = i * self.plan.sim_step_s
        if i % self.plan.steps_per_poll == 0:
            await self.poll(i // self.plan.steps_per_poll)
        self.cluster.advance(now, self.plan.sim_step_s)
        await self.pods.sync(self.cluster.ready_ids(now), now)
        rate, prompt, output = self._workload(now)
        tick = self.fleet.step(rate=rate, mean_prompt=prompt, mean_output=output,
                               ready_replicas=len(self.pods))
        self.pods.serve(tick, prompt, output)
        self.missed += tick.arrivals * (1.0 - tick.slo_fraction)

    async def poll(self, k: int) -> None:
        """One KEDA poll + HPA sync at ``k`` x 15 s: scale replicas, then nodes."""
        now = k * KEDA_INTERVAL_S
        self._close_row()
        ref = pb.ScaledObjectRef(name="demo", namespace="default", scalerMetadata={
            "endpoints": self.pods.endpoints, "targetKvCacheUsage": TARGET_KV_CACHE_USAGE,
            "maxReplicas": str(MAX_REPLICAS),
            # The service runs on wall time while the demo plays 60x fast: the predictive
            # planner's windows (pod start-up, 300 s scale-down, 5-minute forecast steps)
            # would be 60x too long here. `scaler replay --policy predictive` shows it.
            "policy": "reactive"})
        await self.keda.follow(ref)
        answer = await self.keda.poll(ref)
        await self.pods.retire()
        current = self.cluster.counts(now).replicas
        desired = current if answer is None else self.hpa.desired(
            now, current_replicas=current, metric_value=answer[0], target_value=answer[1])
        self._apply(now, current, desired)
        if k % round(PROGRESS_EVERY_S / KEDA_INTERVAL_S) == 0:
            self._progress(now)

    def _apply(self, now: float, current: int, desired: int) -> None:
        if desired != current:
            self.scale_events += 1
            self.log.asks.append((now, current, desired))
            self.cluster.scale_replicas(desired, now)
        nodes = self.autoscaler.nodes(self.cluster, now)
        if nodes != len(self.cluster.nodes):
            self.scale_events += 1
            self.cluster.scale_nodes(nodes, now)
        after = self.cluster.counts(now)
        self.rows.append(DecisionRow(now, desired, after.ready_replicas, nodes,
                                     after.ready_nodes, self._workload(now)[0]))

    def _close_row(self) -> None:
        """Charge the SLO misses since the last poll to that poll's row."""
        if self.rows:
            self.rows[-1] = dataclasses.replace(self.rows[-1], slo_misses=self.missed)
        self.missed = 0.0

    def _workload(self, now: float) -> tuple[float, float, float]:
        w = min(int(now // self.trace.step_s), len(self.trace) - 1)
        return (float(self.trace.rate[w]), float(self.trace.mean_prompt[w]),
                float(self.trace.mean_output[w]))

    def _progress(self, now: float) -> None:
        self.echo(_progress_line(now, self._workload(now)[0], self.cluster.counts(now),
                                 self.fleet.slo_attainment))

    def result(self, parameters: dict[str, Any]) -> ReplayResult:
        ttft = self.fleet.ttft_quantiles((0.5, 0.95, 0.99))
        return ReplayResult(
            policy=POLICY, parameters=parameters, requests=self.fleet.arrived_total,
            slo_attainment=self.fleet.slo_attainment, ttft_p50_s=float(ttft[0]),
            ttft_p95_s=float(ttft[1]), ttft_p99_s=float(ttft[2]),
            gpu_hours=self.cluster.gpu_seconds / 3600, node_hours=self.cluster.node_seconds / 3600,
            scale_events=self.scale_events, decisions=self.rows)


def _progress_line(now: float, demand: float, counts: ClusterCounts, slo: float) -> str:
    hours, minutes = divmod(int(now // 60), 60)
    booting = counts.nodes - counts.ready_nodes
    nodes = f"{counts.ready_nodes}" + (f" (+{booting} booting)" if booting else "")
    return (f"{hours:02d}:{minutes:02d}  demand {demand:.0f} req/s  desired {counts.replicas}  "
            f"ready {counts.ready_replicas}  starting {counts.starting_replicas}  "
            f"pending {counts.pending_replicas}  nodes {nodes}  SLO so far {slo:.1%}")
