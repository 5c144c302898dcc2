"""The loop of `scaler demo`: two fleets, their cluster, KEDA and HPA around the live service.

`scaler demo` (:mod:`scaler.commands.demo`) starts the service and hands it to this loop,
which plays everything around it, twice: one *side* per ScaledObject, ``default/predictive``
and ``default/reactive``, each with its own emulated pods, cluster, HPA and request fleet,
both fed the same demand.

- **Time**: a fixed-step loop. Each step is ``sim_step_s`` simulated seconds (15 s divided by
  a whole number, so KEDA polls fall exactly on the 15 s grid) and ``sim_step_s / speed`` wall
  seconds. Simulated time is counted in steps, never read from the wall clock, and it is the
  service's clock too (:class:`DemoClock`, injected): every window the service and its
  planner keep (rate window, staleness, pod and node lead times, scale-down windows, the
  forecaster's 5-minute steps) runs in simulated seconds, with the values a cluster would
  use, only faster. A run's decisions do not depend on timing jitter; the wall clock only
  paces the loop (``asyncio.sleep`` to each step's deadline).
- **Scrapes**: the service runs without its background timers (``background=False``); the
  loop does a scrape round of each workload after every KEDA poll (``ScalerService.scrape``,
  what the timer would call every ``scrape.interval_s``), then lets a due forecaster refit
  start, as the round does.
- **Fleet**: ``FluidFleet`` stepped once per step with the number of READY replicas; its load
  goes into the side's pods (:mod:`scaler.commands.demo_pods`).
- **Cluster**: the replay's ``Cluster`` (pod start-up 180 s, node start-up 900 s, simulated),
  started warm with the replicas the first minute needs. Nodes: the service's node plan when
  it gives one (the predictive side; the node pool controller would order them), else
  ``ClusterAutoscaler`` (nodes for pending pods).
- **KEDA + HPA**: every 15 simulated seconds, per side, the three calls through the generated
  client (:mod:`scaler.commands.demo_keda`); the metric goes through the emulated
  ``HorizontalPodAutoscaler`` (default behaviour) into ``Cluster.scale_replicas``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from scaler.commands.demo_keda import Keda
from scaler.commands.demo_pods import Pods
from scaler.keda.proto import externalscaler_pb2 as pb
from scaler.model.capacity import CapacityModel
from scaler.model.profile import ReplicaProfile
from scaler.model.queueing import FluidFleet
from scaler.service.service import ScalerService
from scaler.service.workloads import Workload, WorkloadKey
from scaler.sim.cluster import Cluster, ClusterCounts
from scaler.sim.hpa import DEFAULT_BEHAVIOR, HorizontalPodAutoscaler, HpaBehavior
from scaler.sim.policies import ClusterAutoscaler
from scaler.sim.replay import ReplaySettings, initial_replicas
from scaler.sim.results import DecisionRow
from scaler.sim.traces import RateTrace

__all__ = ["DemoClock", "DemoLog", "DemoLoop", "Plan", "Side", "make_plan"]

WALL_STEP_S = 0.1  # nominal wall seconds per loop step
KEDA_INTERVAL_S = 15.0  # simulated seconds between KEDA/HPA polls
PROGRESS_EVERY_S = 300.0  # simulated
POD_STARTUP_S = 180.0
NODE_STARTUP_S = 600.0  # a cloud GPU node; bare metal takes 15-30 minutes
GPUS_PER_REPLICA = 1
GPUS_PER_NODE = 8
MIN_REPLICAS = 1
MAX_REPLICAS = 24
WARM_S = 600.0  # the start is sized for the busiest minute of this much demand
NAMESPACE = "default"
METRIC_NAME = "desired-replicas"


class DemoClock:
    """The service's clock in the demo: simulated seconds, moved by the loop only."""

    def __init__(self, wall_origin_s: float) -> None:
        self.now_s = 0.0
        self.wall_origin_s = wall_origin_s

    def monotonic(self) -> float:
        return self.now_s

    def wall(self) -> float:
        return self.wall_origin_s + self.now_s

    def set(self, now_s: float) -> None:
        if now_s < self.now_s:
            raise ValueError(f"the demo clock cannot go back ({self.now_s} -> {now_s})")
        self.now_s = now_s


@dataclass
class DemoLog:
    """What happened during a demo run beyond the sides' rows (tests and the closing block).

    ``registry`` is the running service's Prometheus registry (set once the service is up;
    still readable after the run).
    """

    grpc_port: int = 0
    http_port: int = 0
    registry: CollectorRegistry | None = None
    get_metrics_ok: float = 0.0  # scaler_rpc_requests_total{GetMetrics,OK}, read before stop
    warm_start: str = "not tried"  # the predictive forecaster's warm start: ok, failed, ...
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


def settings() -> ReplaySettings:
    """The demo cluster's delays and shape, as a replay would take them."""
    return ReplaySettings(pod_startup_s=POD_STARTUP_S, node_startup_s=NODE_STARTUP_S,
                          gpus_per_replica=GPUS_PER_REPLICA, gpus_per_node=GPUS_PER_NODE)


@dataclass
class Side:
    """One ScaledObject's world: its trigger metadata, pods, KEDA client, cluster and fleet."""

    name: str  # the ScaledObject's name, also the policy it asks for
    metadata: dict[str, str]  # the trigger's metadata, without the endpoints
    pods: Pods
    keda: Keda
    cluster: Cluster
    hpa: HorizontalPodAutoscaler
    fleet: FluidFleet
    autoscaler: ClusterAutoscaler = field(default_factory=ClusterAutoscaler)
    rows: list[DecisionRow] = field(default_factory=list)
    forecast_upper: list[float] = field(default_factory=list)  # per row; NaN: none
    asks: list[tuple[float, int, int]] = field(default_factory=list)  # (time, from, to)
    node_asks: list[tuple[float, int, int]] = field(default_factory=list)
    missed: float = 0.0
    scale_events: int = 0

    @property
    def key(self) -> WorkloadKey:
        return WorkloadKey(NAMESPACE, self.name, METRIC_NAME)

    def ref(self) -> pb.ScaledObjectRef:
        return pb.ScaledObjectRef(name=self.name, namespace=NAMESPACE, scalerMetadata={
            "endpoints": self.pods.endpoints, **self.metadata})


def make_side(name: str, metadata: dict[str, str], keda: Keda, trace: RateTrace,
              profile: ReplicaProfile, plan: Plan,
              behavior: HpaBehavior = DEFAULT_BEHAVIOR) -> Side:
    """A side started warm, where its own rule holds the busiest minute of the first ``WARM_S``.

    A fleet that has served the flat morning is sized for its noise, not for one quiet
    minute: started at the edge of saturation, the first busy minute builds a backlog that
    has nothing to do with the policies the demo compares. The hour is a slice of a day each
    policy has been running, so each side starts at the count its rule settles at: at least
    what the SLO needs, and for a running-requests target, the count that keeps each replica
    under it (started lower, the HPA's first syncs would overshoot from a saturated fleet).
    """
    demo = settings()
    cluster = Cluster(pod_startup_s=POD_STARTUP_S, node_startup_s=NODE_STARTUP_S,
                      gpus_per_replica=GPUS_PER_REPLICA, gpus_per_node=GPUS_PER_NODE)
    first = slice(0, max(1, round(WARM_S / trace.step_s)))
    rate, prompt, output = (float(trace.rate[first].max()), float(trace.mean_prompt[0]),
                            float(trace.mean_output[0]))
    busiest = CapacityModel(profile, slo_ttft_s=demo.slo_ttft_s).replicas_for(rate, prompt,
                                                                             output)
    warm = max(busiest, initial_replicas(trace, demo, profile))
    target = float(metadata.get("targetRunningPerReplica", 0))
    if target > 0:
        warm = max(warm, replicas_under_running_target(profile, rate, prompt, output, target))
    cluster.start_warm(replicas=warm, nodes=0)
    return Side(name, metadata, Pods(profile), keda, cluster,
                HorizontalPodAutoscaler(min_replicas=MIN_REPLICAS, max_replicas=MAX_REPLICAS,
                                        behavior=behavior),
                FluidFleet(profile, tick_s=plan.sim_step_s, slo_ttft_s=demo.slo_ttft_s))


def replicas_under_running_target(profile: ReplicaProfile, rate: float, mean_prompt: float,
                                  mean_output: float, target: float) -> int:
    """The fewest replicas (up to ``MAX_REPLICAS``) whose steady load at ``rate`` runs at
    most ``target`` requests per replica, by the fleet model the demo's pods serve from."""
    for replicas in range(1, MAX_REPLICAS):
        fleet = FluidFleet(profile)
        tick = fleet.step(rate=rate, mean_prompt=mean_prompt, mean_output=mean_output,
                          ready_replicas=replicas)
        if tick.load.running <= target:
            return replicas
    return MAX_REPLICAS


class DemoLoop:
    """The simulation state and one step of it; ``run_demo`` owns the servers around it."""

    def __init__(self, plan: Plan, trace: RateTrace, sides: list[Side], service: ScalerService,
                 clock: DemoClock, echo: Callable[[str], None]) -> None:
        self.plan, self.trace, self.sides = plan, trace, sides
        self.service, self.clock, self.echo = service, clock, echo

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for side in self.sides:
            await side.pods.sync(side.cluster.ready_ids(0.0), 0.0)
        started = loop.time()
        for i in range(self.plan.steps):
            await self.step(i)
            await asyncio.sleep(max(0.0, started + (i + 1) * self.plan.wall_step_s - loop.time()))
        for side in self.sides:
            _close_row(side)
        self._progress(self.plan.steps * self.plan.sim_step_s)

    async def step(self, i: int) -> None:
        now = i * self.plan.sim_step_s
        self.clock.set(now)
        if i % self.plan.steps_per_poll == 0:
            k = i // self.plan.steps_per_poll
            for side in self.sides:
                await self.poll(side, now)
            if k % round(PROGRESS_EVERY_S / KEDA_INTERVAL_S) == 0:
                self._progress(now)
        rate, prompt, output = self.workload(now)
        for side in self.sides:
            side.cluster.advance(now, self.plan.sim_step_s)
            await side.pods.sync(side.cluster.ready_ids(now), now)
            tick = side.fleet.step(rate=rate, mean_prompt=prompt, mean_output=output,
                                   ready_replicas=len(side.pods))
            side.pods.serve(tick, prompt, output)
            side.missed += tick.arrivals * (1.0 - tick.slo_fraction)

    async def poll(self, side: Side, now: float) -> None:
        """One KEDA poll + HPA sync: scale replicas, then nodes; then the service's scrape."""
        _close_row(side)
        ref = side.ref()
        await side.keda.follow(ref)
        answer = await side.keda.poll(ref)
        await side.pods.retire()
        current = side.cluster.counts(now).replicas
        desired = current if answer is None else side.hpa.desired(
            now, current_replicas=current, metric_value=answer[0], target_value=answer[1])
        workload = self.service.registry.get(side.key)
        self._apply(side, now, current, desired, workload)
        if workload is not None:
            await self.service.scrape(workload)
            runner = self.service.runners.get(side.key)
            if runner is not None:
                self.service.forecasting.refit_when_due(workload, runner.refit)

    def _apply(self, side: Side, now: float, current: int, desired: int,
               workload: Workload | None) -> None:
        cluster = side.cluster
        if desired != current:
            side.scale_events += 1
            side.asks.append((now, current, desired))
            cluster.scale_replicas(desired, now)
        decision = workload.decision if workload is not None else None
        planned = decision.desired_nodes if decision is not None else None
        nodes = planned if planned is not None else side.autoscaler.nodes(cluster, now)
        if nodes != len(cluster.nodes):
            side.scale_events += 1
            side.node_asks.append((now, len(cluster.nodes), nodes))
            cluster.scale_nodes(nodes, now)
        after = cluster.counts(now)
        plan = workload.plan if workload is not None else None
        side.rows.append(DecisionRow(now, desired, after.ready_replicas, nodes,
                                     after.ready_nodes, self.workload(now)[0],
                                     plan.forecast_mean if plan else math.nan))
        side.forecast_upper.append(plan.forecast_upper if plan else math.nan)

    def workload(self, now: float) -> tuple[float, float, float]:
        """Demand at ``now``: rate (req/s), mean prompt and output tokens."""
        w = min(int(now // self.trace.step_s), len(self.trace) - 1)
        return (float(self.trace.rate[w]), float(self.trace.mean_prompt[w]),
                float(self.trace.mean_output[w]))

    def _progress(self, now: float) -> None:
        hours, minutes = divmod(int(now // 60), 60)
        parts = [_side_line(side, side.cluster.counts(now)) for side in self.sides]
        self.echo(f"+{hours:d}:{minutes:02d}  demand {self.workload(now)[0]:3.0f} req/s  "
                  + "  |  ".join(parts))


def _close_row(side: Side) -> None:
    """Charge the SLO misses since the last poll to that poll's row."""
    if side.rows:
        side.rows[-1] = dataclasses.replace(side.rows[-1], slo_misses=side.missed)
    side.missed = 0.0


def _side_line(side: Side, counts: ClusterCounts) -> str:
    booting = counts.nodes - counts.ready_nodes
    nodes = f"{counts.ready_nodes}" + (f"+{booting}" if booting else "")
    coming = counts.replicas - counts.ready_replicas
    replicas = f"{counts.ready_replicas}" + (f"+{coming}" if coming else "")
    return (f"{side.name} {replicas:>5} replicas {nodes:>3} nodes "
            f"SLO {side.fleet.slo_attainment:6.1%}")
