"""`scaler demo`: the real service scaling emulated vLLM pods through KEDA + HPA, in a minute.

No cluster, no GPU. Everything runs in one event loop on 127.0.0.1:

- **Workload**: the built-in synthetic rate trace (``synthetic_workload(seed)``, scaled by
  ``rate_scale``), the slice from ``start_hour`` that lasts ``wall_s x speed`` simulated
  seconds: at the default 60x, one minute of wall time plays one hour.
- **The service**: ``start_app`` exactly as ``scaler serve`` runs, with its scrape interval,
  staleness limit and rate window set to 15 s, 45 s and 60 s of simulated time in wall seconds,
  and KEDA answered by the scaling process itself (``server.front_process`` false): at 60-300x
  the front's 50 ms batches are seconds of simulated time, and the priority the scaling
  process yields to a front would be the demo loop's too (one workload needs no front).
- **The loop** (:mod:`scaler.commands.demo_loop`): a fixed-step simulation that feeds
  emulated vLLM pods from a fluid fleet, starts and stops them as a simulated cluster brings
  replicas up and down, and polls the service every 15 simulated seconds as KEDA does, the
  answer going through an emulated HPA.

At the end: a ``ReplayResult`` (policy ``reactive (live service)``, one ``DecisionRow`` per
KEDA poll, SLO attainment and TTFT quantiles from the fleet, GPU- and node-hours from the
cluster) written by ``write_outputs`` like a replay. Pods, stream, channel and service are
stopped on every exit path, Ctrl-C included.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from scaler.commands.demo_loop import (
    GPUS_PER_NODE,
    GPUS_PER_REPLICA,
    KEDA_INTERVAL_S,
    MAX_REPLICAS,
    MIN_REPLICAS,
    NODE_STARTUP_S,
    POD_STARTUP_S,
    TARGET_KV_CACHE_USAGE,
    DemoLog,
    DemoLoop,
    Keda,
    Plan,
    Pods,
    make_plan,
)
from scaler.commands.serve import start_app
from scaler.config.profiles import default_profile
from scaler.config.settings import ServiceConfig
from scaler.keda.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.sim.report import write_outputs
from scaler.sim.results import ReplayResult
from scaler.sim.synthetic import synthetic_workload
from scaler.sim.traces import RateTrace, scale

__all__ = ["demo_workload", "run_demo"]

HOST = "127.0.0.1"
SCRAPE_INTERVAL_S = 15.0  # simulated
RATE_WINDOW_S = 60.0  # simulated
DAY_S = 86400.0


def demo_workload(*, seed: int, start_hour: float, duration_s: float,
                  rate_scale: float) -> RateTrace:
    """The built-in synthetic workload x ``rate_scale``, from ``start_hour`` for ``duration_s``.

    Times start at 0; the name says which slice it is, e.g.
    ``synthetic seed=0 2d x0.5 07:00+60min``.
    """
    if not (math.isfinite(start_hour) and start_hour >= 0):
        raise ValueError(f"start_hour must be a finite number >= 0, got {start_hour!r}")
    begin = start_hour * 3600.0
    days = max(2, math.ceil((begin + duration_s) / DAY_S))
    full = scale(synthetic_workload(seed, days=days), rate_scale)
    assert isinstance(full, RateTrace)
    first = int(begin // full.step_s)
    last = min(len(full), first + max(1, math.ceil(duration_s / full.step_s)))
    hours, minutes = divmod(round(start_hour * 60), 60)
    name = f"{full.name} {hours:02d}:{minutes:02d}+{duration_s / 60:g}min"
    return RateTrace(name, full.step_s, full.start_s[first:last] - full.start_s[first],
                     full.rate[first:last], full.mean_prompt[first:last],
                     full.mean_output[first:last])


def _service_config(speed: float) -> ServiceConfig:
    """Loopback, free ports, no shutdown grace, one process; scrape timing in sim seconds made
    wall."""
    config = ServiceConfig()
    interval = SCRAPE_INTERVAL_S / speed
    return dataclasses.replace(
        config,
        server=dataclasses.replace(config.server, host=HOST, grpc_port=0, http_port=0,
                                   grace_s=0, front_process=False),
        scrape=dataclasses.replace(config.scrape, interval_s=interval,
                                   stale_after_s=3 * interval,
                                   rate_window_s=RATE_WINDOW_S / speed),
    )

async def run_demo(*, wall_s: float = 60.0, speed: float = 60.0, seed: int = 0,
                   out: Path = Path("out/demo"), start_hour: float = 7.0,
                   rate_scale: float = 0.5, echo: Callable[[str], None] = print,
                   log: DemoLog | None = None) -> ReplayResult:
    """Play ``wall_s x speed`` simulated seconds of the workload against the live service.

    Writes summary.json, decisions.csv, report.md and report.png into ``out``; fills ``log``
    when given. Raises ValueError naming a bad argument.
    """
    plan = make_plan(wall_s, speed)
    if not (math.isfinite(rate_scale) and rate_scale > 0):
        raise ValueError(f"rate_scale must be a finite number > 0, got {rate_scale!r}")
    trace = demo_workload(seed=seed, start_hour=start_hour, duration_s=plan.duration_s,
                          rate_scale=rate_scale)
    log = log if log is not None else DemoLog()
    demo = await _play(plan, trace, echo, log)
    parameters = _parameters(demo, wall_s=wall_s, seed=seed, rate_scale=rate_scale,
                             start_hour=start_hour)
    result = demo.result(parameters)
    paths = write_outputs(result, out)
    for line in _closing(result, log, [str(p) for p in paths.values()]):
        echo(line)
    return result


async def _play(plan: Plan, trace: RateTrace, echo: Callable[[str], None],
                log: DemoLog) -> DemoLoop:
    """Start the service, the pods and KEDA's client; run the loop; stop everything."""
    wall_start = time.perf_counter()
    async with contextlib.AsyncExitStack() as stack:
        app = await start_app(_service_config(plan.speed))
        stack.push_async_callback(app.stop)
        log.grpc_port, log.http_port = app.grpc_port, app.http_port
        log.registry = app.service.telemetry.registry
        pods = Pods(default_profile(), log)
        stack.push_async_callback(pods.stop_all)
        channel = await stack.enter_async_context(
            grpc.aio.insecure_channel(f"{HOST}:{app.grpc_port}"))
        keda = Keda(pb_grpc.ExternalScalerStub(channel), log)  # type: ignore[no-untyped-call]
        stack.push_async_callback(keda.close)
        demo = DemoLoop(plan, trace, pods, keda, echo, log)
        echo(_opening(plan, trace, log, demo.start_replicas))
        await demo.run()
        log.get_metrics_ok = log.registry.get_sample_value(
            "scaler_rpc_requests_total", {"method": "GetMetrics", "code": "OK"}) or 0.0
    log.wall_elapsed_s = time.perf_counter() - wall_start
    return demo


def _opening(plan: Plan, trace: RateTrace, log: DemoLog, start_replicas: int) -> str:
    return (f"scaler demo: service on gRPC {HOST}:{log.grpc_port}, HTTP {HOST}:{log.http_port}"
            f"\n  playing {trace.name} at {plan.speed:g}x ({plan.duration_s / 60:g} sim min in "
            f"{plan.duration_s / plan.speed:g} s); {start_replicas} warm replica(s); pods start "
            f"in {POD_STARTUP_S:g} s, nodes in {NODE_STARTUP_S:g} s (sim); KEDA polls every "
            f"{KEDA_INTERVAL_S:g} s (sim), targetKvCacheUsage {TARGET_KV_CACHE_USAGE}")


def _parameters(demo: DemoLoop, *, wall_s: float, seed: int, rate_scale: float,
                start_hour: float) -> dict[str, Any]:
    return {
        "trace": demo.trace.name, "profile": demo.profile.name, "knob": "targetKvCacheUsage",
        "knob_value": float(TARGET_KV_CACHE_USAGE), "speed": demo.plan.speed, "wall_s": wall_s,
        "seed": seed, "rate_scale": rate_scale, "start_hour": start_hour,
        "initial_replicas": demo.start_replicas, "min_replicas": MIN_REPLICAS,
        "max_replicas": MAX_REPLICAS, "pod_startup_s": POD_STARTUP_S,
        "node_startup_s": NODE_STARTUP_S, "gpus_per_replica": GPUS_PER_REPLICA,
        "gpus_per_node": GPUS_PER_NODE, "slo_ttft_s": demo.settings.slo_ttft_s,
        "decision_interval_s": KEDA_INTERVAL_S, "sim_step_s": demo.plan.sim_step_s,
    }


def _closing(result: ReplayResult, log: DemoLog, paths: list[str]) -> list[str]:
    peak = max((row.ready_replicas for row in result.decisions), default=0)
    stream = f"StreamIsActive: {log.stream_messages} message(s) over {log.stream_opens} stream(s)"
    if log.stream_error:
        stream += f" (ended with {log.stream_error})"
    return [
        "",
        f"{result.policy} on {result.parameters['trace']} "
        f"({log.wall_elapsed_s:.1f} s wall):",
        f"  requests {result.requests:,.0f}  SLO attainment {result.slo_attainment:.2%}  TTFT "
        f"p50/p95/p99 {_s(result.ttft_p50_s)}/{_s(result.ttft_p95_s)}/{_s(result.ttft_p99_s)}",
        f"  {result.gpu_hours:.2f} GPU-hours, {result.node_hours:.2f} node-hours, "
        f"{result.scale_events} scale events, peak {peak} ready replicas, "
        f"{len(log.pod_starts)} pods started, {len(log.pod_stops)} stopped",
        f"  KEDA polls {log.polls}: GetMetrics OK {log.get_metrics_ok:.0f}, UNAVAILABLE "
        f"{log.unavailable}; {stream}",
        *(f"  {path}" for path in paths),
    ]


def _s(value: float) -> str:
    return f"{value:.2f}s" if math.isfinite(value) else "n/a"
