"""`scaler demo`: the predictive and a reactive policy side by side, on the live service.

No cluster, no GPU. Everything runs in one event loop on 127.0.0.1:

- **Workload** (:mod:`scaler.commands.demo_trace`): an hour of a made-up day played at
  ``speed`` (60x: an hour in a minute): flat, the morning ramp every day has, and a burst no
  history announces. Both ScaledObjects see the same demand.
- **The service**: ``start_app`` as ``scaler serve`` runs it, with the production defaults,
  on the demo's simulated clock (:class:`~scaler.commands.demo_loop.DemoClock`), so the
  planner's windows and lead times are the real ones, compressed only by the clock. Its
  forecaster warm-starts from two weeks of history through the real path: an emulated
  Prometheus (:mod:`scaler.sim.emulation.prometheus`) answers its range query.
- **Two ScaledObjects**: ``default/predictive`` (the default policy: forecast one pod and one
  node lead time ahead) and ``default/reactive`` (the HPA-style rule on queue and KV-cache
  per replica, the usual way LLM serving is autoscaled). Each has its own emulated pods,
  cluster, KEDA client and HPA (:mod:`scaler.commands.demo_loop`); the reactive side's HPA
  has a 60 s scale-up stabilization window (``REACTIVE_BEHAVIOR``).

At the end: a ``ReplayResult`` per side written like a replay (``predictive/``,
``reactive/``), ``report.png`` comparing both against the demand and the forecast band, and
one line saying what the forecast bought. Pods, streams, channel and service are stopped on
every exit path, Ctrl-C included.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from prometheus_client import CollectorRegistry

from scaler.commands import demo_loop as loop
from scaler.commands.demo_keda import RPC_TIMEOUT_S, Keda
from scaler.commands.demo_report import closing, opening, side_result, write_demo_outputs
from scaler.commands.demo_trace import DemoDay, demo_day
from scaler.commands.serve import RunningApp, start_app
from scaler.config.profiles import default_profile
from scaler.config.settings import ServiceConfig
from scaler.keda.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.service.service import ScalerService
from scaler.sim.emulation.prometheus import EmulatedPrometheus
from scaler.sim.hpa import DEFAULT_BEHAVIOR, DEFAULT_SCALE_UP, HpaBehavior, ScalingRules

__all__ = ["DemoRun", "run_demo"]

HOST = "127.0.0.1"
WALL_ORIGIN_S = 1_800_000_000.0  # the simulated wall clock at the start (a whole 5 minutes)
WARM_START_WAIT_S = 30.0  # wall seconds the warm start may take before the demo goes on
WARM_START_POLL_S = 0.02
PREDICTIVE = {"policy": "predictive", "podStartupSeconds": str(loop.POD_STARTUP_S),
              "nodeStartupSeconds": str(loop.NODE_STARTUP_S)}
# A reactive setup a team would run: running requests per replica (what Knative's KPA and
# AIBrix scale on), 25 per replica keeping each at about 10 req/s, off the knee where the count
# swings with every minute's noise (at 15 req/s a replica runs 48-79), the queue and KV-cache
# rules as a safety net; and, in the HPA, a 60 s scale-up stabilization window so that one
# noisy poll does not start pods. With the HPA's defaults and 60 running per replica it moved
# 4 -> 5 -> 4 -> 6 on flat demand.
REACTIVE = {"policy": "reactive", "targetRunningPerReplica": "25",
            "targetQueuePerReplica": "5", "targetKvCacheUsage": "0.8"}
REACTIVE_BEHAVIOR = HpaBehavior(scale_up=ScalingRules(
    stabilization_s=60.0, policies=DEFAULT_SCALE_UP.policies))
# The predictive side keeps the HPA's default behavior, not the shipped ScaledObject's (no
# window, tolerance 0): the demo's scaler reads static `endpoints` that list the serving pods
# only, so it cannot see replicas still starting and its hold while they start never applies;
# without the HPA's scale-down window it flapped (21 -> 15 -> 16 ...) and met 98.5 %.
PREDICTIVE_BEHAVIOR = DEFAULT_BEHAVIOR
SHARED = {"minReplicas": str(loop.MIN_REPLICAS), "maxReplicas": str(loop.MAX_REPLICAS),
          "gpusPerReplica": str(loop.GPUS_PER_REPLICA), "gpusPerNode": str(loop.GPUS_PER_NODE)}


@dataclasses.dataclass
class DemoRun:
    """A finished demo: both sides, the shared log, and the files written."""

    day: DemoDay
    sides: list[loop.Side]
    log: loop.DemoLog
    paths: list[Path]


def _service_config(prometheus_url: str) -> ServiceConfig:
    """Loopback, free ports, no shutdown grace, one process, history from ``prometheus_url``.

    Scrape timing keeps its defaults: they are in the service's (simulated) seconds.
    """
    config = ServiceConfig()
    return dataclasses.replace(
        config,
        server=dataclasses.replace(config.server, host=HOST, grpc_port=0, http_port=0,
                                   grace_s=0, front_process=False),
        prometheus=dataclasses.replace(config.prometheus, url=prometheus_url,
                                       history_query="demand of {scaledobject}"),
    )


async def run_demo(*, wall_s: float = 60.0, speed: float = 60.0, seed: int = 0,
                   out: Path = Path("out/demo"), echo: Callable[[str], None] = print,
                   log: loop.DemoLog | None = None, flat: bool = False) -> DemoRun:
    """Play ``wall_s x speed`` simulated seconds of the demo day against the live service.

    Writes both sides' outputs and ``report.png`` into ``out``; ``flat`` plays a day with no
    ramp and no burst. Raises ValueError naming a bad argument.
    """
    plan = loop.make_plan(wall_s, speed)
    day = demo_day(seed, plan.duration_s, flat=flat)
    log = log if log is not None else loop.DemoLog()
    wall_start = time.perf_counter()
    sides = await _play(plan, day, echo, log)
    log.wall_elapsed_s = time.perf_counter() - wall_start
    parameters = {"trace": day.played.name, "speed": speed, "wall_s": wall_s, "seed": seed}
    results = [side_result(side, parameters) for side in sides]
    paths = write_demo_outputs(results, sides, day, out)
    for line in closing(results, sides, log, paths):
        echo(line)
    return DemoRun(day, sides, log, paths)


async def _play(plan: loop.Plan, day: DemoDay, echo: Callable[[str], None],
                log: loop.DemoLog) -> list[loop.Side]:
    """Start Prometheus, the service and KEDA's clients; run the loop; stop everything."""
    profile = default_profile()
    async with contextlib.AsyncExitStack() as stack:
        prometheus = EmulatedPrometheus([WALL_ORIGIN_S + t for t in day.history_times_s],
                                        day.history_rates)
        await prometheus.start()
        stack.push_async_callback(prometheus.stop)
        clock = loop.DemoClock(WALL_ORIGIN_S)
        config = _service_config(prometheus.url)
        app = await start_app(config, ScalerService(config, clock=clock, background=False))
        stack.push_async_callback(app.stop)
        log.grpc_port, log.http_port = app.grpc_port, app.http_port
        log.registry = app.service.telemetry.registry
        channel = await stack.enter_async_context(
            grpc.aio.insecure_channel(f"{HOST}:{app.grpc_port}"))
        stub = pb_grpc.ExternalScalerStub(channel)  # type: ignore[no-untyped-call]
        sides = []
        for name, metadata, behavior in (("predictive", PREDICTIVE, PREDICTIVE_BEHAVIOR),
                                         ("reactive", REACTIVE, REACTIVE_BEHAVIOR)):
            side = loop.make_side(name, {**metadata, **SHARED}, Keda(stub), day.played,
                                  profile, plan, behavior)
            stack.push_async_callback(side.keda.close)
            stack.push_async_callback(side.pods.stop_all)
            sides.append(side)
        echo(opening(plan, day, log, sides))
        await _register(app, sides, log)
        demo = loop.DemoLoop(plan, day.played, sides, app.service, clock, echo)
        await demo.run()
        log.get_metrics_ok = log.registry.get_sample_value(
            "scaler_rpc_requests_total", {"method": "GetMetrics", "code": "OK"}) or 0.0
    return sides


async def _register(app: RunningApp, sides: list[loop.Side], log: loop.DemoLog) -> None:
    """KEDA's first call for each ScaledObject, then the forecaster's warm start and fit.

    A new ScaledObject's first call registers its workload, and a predictive one reads its
    history from Prometheus in the background; the demo's clock waits for it (a cluster's
    would not need to: it is not 60x fast), and for the refit that follows it, so the first
    simulated minute already has the forecaster the week taught.
    """
    for side in sides:
        await side.pods.sync(side.cluster.ready_ids(0.0), 0.0)  # the warm replicas' pods
        await side.keda.stub.GetMetricSpec(side.ref(), timeout=RPC_TIMEOUT_S)
    registry = app.service.telemetry.registry
    for _ in range(round(WARM_START_WAIT_S / WARM_START_POLL_S)):  # its task is the service's
        log.warm_start = _warm_start_result(registry)
        if log.warm_start != "not tried":
            break
        await asyncio.sleep(WARM_START_POLL_S)
    for side in sides:
        workload = app.service.registry.get(side.key)
        if workload is not None:
            await app.service.forecasting.refit_forecast(workload)


def _warm_start_result(registry: CollectorRegistry) -> str:
    """How the forecaster's warm start ended, from the service's counter ('not tried' yet)."""
    for result in ("ok", "failed", "skipped"):
        if registry.get_sample_value("scaler_forecast_warm_starts_total", {"result": result}):
            return result
    return "not tried"
