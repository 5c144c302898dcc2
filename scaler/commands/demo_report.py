"""What `scaler demo` prints and writes: both sides against the same demand.

Why a plot of its own: the replay's report shows one policy; the demo's point is the
difference, so ``report.png`` draws both sides on shared axes: the demand with the forecast
band the predictive planner sized for (its mean and upper bound, drawn at the time they were
forecast for, one pod lead time ahead), replicas asked for and ready, nodes asked for and
ready, with the moment each side first asked for more replicas and nodes marked against the
start of the ramp. Each side's own replay-style files go in a folder named after it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from scaler.commands import demo_loop as loop
from scaler.commands.demo_trace import RAMP_AT_S, START_S, DemoDay
from scaler.sim.report import write_outputs
from scaler.sim.results import ReplayResult

__all__ = ["closing", "first_ask", "opening", "side_result", "write_demo_outputs"]

COLORS = {"predictive": "tab:blue", "reactive": "tab:red"}
RAMP_FROM_START_S = RAMP_AT_S - START_S


def opening(plan: loop.Plan, day: DemoDay, log: loop.DemoLog, sides: list[loop.Side]) -> str:
    warm = sides[0].cluster.counts(0.0).replicas
    return "\n".join([
        f"scaler demo: service on gRPC 127.0.0.1:{log.grpc_port}, "
        f"HTTP 127.0.0.1:{log.http_port}",
        f"  playing {day.played.name} at {plan.speed:g}x ({plan.duration_s / 60:g} sim min in "
        f"{plan.duration_s / plan.speed:g} s): the same demand for two ScaledObjects, "
        f"{warm} warm replica(s) each",
        f"  pods start in {loop.POD_STARTUP_S:g} s, nodes in {loop.NODE_STARTUP_S:g} s "
        f"({loop.GPUS_PER_NODE} GPUs, 1 per replica); KEDA polls every "
        f"{loop.KEDA_INTERVAL_S:g} s (all simulated)",
        "  predictive: forecasts demand one pod (and one node) lead time ahead, from a week of "
        "history read from Prometheus",
        "  reactive:   HPA-style: 25 running requests per replica (about 10 req/s each), 5 "
        "waiting or 80% KV cache, whichever asks for most; scale-up stabilized over 60 s",
        "  time      demand         side      ready+coming  nodes ready+booting  SLO so far",
    ])


def side_result(side: loop.Side, parameters: dict[str, Any]) -> ReplayResult:
    """A side as a replay result (its policy named, the demo's parameters and its metadata)."""
    fleet, cluster = side.fleet, side.cluster
    ttft = fleet.ttft_quantiles((0.5, 0.95, 0.99))
    return ReplayResult(
        policy=f"{side.name} (live service)",
        parameters={**parameters, "scaledobject": f"{loop.NAMESPACE}/{side.name}",
                    "metadata": side.metadata, "pod_startup_s": loop.POD_STARTUP_S,
                    "node_startup_s": loop.NODE_STARTUP_S, "polls": side.keda.polls,
                    "unavailable": side.keda.unavailable},
        requests=fleet.arrived_total, slo_attainment=fleet.slo_attainment,
        ttft_p50_s=float(ttft[0]), ttft_p95_s=float(ttft[1]), ttft_p99_s=float(ttft[2]),
        gpu_hours=cluster.gpu_seconds / 3600, node_hours=cluster.node_seconds / 3600,
        scale_events=side.scale_events, decisions=side.rows)


def first_ask(asks: list[tuple[float, int, int]], after_s: float = 0.0) -> float | None:
    """When a side first asked for more (replicas or nodes) at or after ``after_s``."""
    return next((t for t, before, to in asks if to > before and t >= after_s), None)


def write_demo_outputs(results: list[ReplayResult], sides: list[loop.Side], day: DemoDay,
                       out: Path) -> list[Path]:
    """Each side's replay files in ``out/<side>/``, and the comparison ``out/report.png``."""
    paths = []
    for result, side in zip(results, sides, strict=True):
        paths.append(write_outputs(result, out / side.name)["summary"].parent)
    out.mkdir(parents=True, exist_ok=True)
    plot = out / "report.png"
    plot_demo(results, sides, day, plot)
    return [plot, *paths]


def closing(results: list[ReplayResult], sides: list[loop.Side], log: loop.DemoLog,
            paths: list[Path]) -> list[str]:
    lines = ["", f"after {log.wall_elapsed_s:.1f} s wall (forecaster warm start: "
             f"{log.warm_start}; GetMetrics OK {log.get_metrics_ok:.0f}):"]
    for result, side in zip(results, sides, strict=True):
        lines.append(
            f"  {side.name:<10} SLO {result.slo_attainment:6.2%}  TTFT p99 "
            f"{_s(result.ttft_p99_s):>7}  {result.gpu_hours:5.2f} GPU-hours  "
            f"{result.node_hours:5.2f} node-hours  {len(side.asks)} replica changes, "
            f"more replicas first asked {_at(first_ask(side.asks, 1.0))}, nodes "
            f"{_at(first_ask(side.node_asks))}; KEDA polls {side.keda.polls}, "
            f"UNAVAILABLE {side.keda.unavailable}")
    lines.append(f"  (the ramp starts at {_at(RAMP_FROM_START_S)}; a pod takes "
                 f"{loop.POD_STARTUP_S / 60:g} min, a node {loop.NODE_STARTUP_S / 60:g} min)")
    if len(results) == 2:
        p, r = results
        lines.append(
            f"What the forecast bought: SLO {p.slo_attainment:.1%} vs {r.slo_attainment:.1%}, "
            f"TTFT p99 {_s(p.ttft_p99_s)} vs {_s(r.ttft_p99_s)}, for {p.gpu_hours:.1f} vs "
            f"{r.gpu_hours:.1f} GPU-hours (predictive vs reactive)")
    lines += [f"  {path}" for path in paths]
    return lines


def _at(t_s: float | None) -> str:
    """A simulated time as the demo's clock shows it (+m:ss), or 'never'."""
    if t_s is None:
        return "never"
    minutes, seconds = divmod(round(t_s), 60)
    return f"+{minutes}:{seconds:02d}"


def _s(value: float) -> str:
    return f"{value:.2f}s" if math.isfinite(value) else "n/a"


# --------------------------------------------------------------------------- the plot


def plot_demo(results: list[ReplayResult], sides: list[loop.Side], day: DemoDay,
              path: Path) -> None:
    """Demand and forecast band; replicas; nodes: both sides, minutes on the x axis."""
    fig = Figure(figsize=(12, 10), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, 1, sharex=True)
    fig.suptitle(" vs ".join(f"{r.policy}: SLO {r.slo_attainment:.1%}, {r.gpu_hours:.1f} "
                             "GPU-hours" for r in results) + f"\n{day.played.name}")
    _draw_demand(axes[0], sides, day)
    for ax, desired, ready, label in ((axes[1], "desired_replicas", "ready_replicas",
                                       "replicas"),
                                      (axes[2], "desired_nodes", "ready_nodes", "nodes")):
        for side in sides:
            times = np.array([row.time_s for row in side.rows]) / 60.0
            color = COLORS.get(side.name, "tab:gray")
            ax.step(times, [getattr(row, desired) for row in side.rows], where="post",
                    color=color, linestyle="--", label=f"{side.name}: asked for")
            ax.step(times, [getattr(row, ready) for row in side.rows], where="post",
                    color=color, label=f"{side.name}: ready")
            asks = side.asks if label == "replicas" else side.node_asks
            first = first_ask(asks, 1.0)
            if first is not None:
                ax.axvline(first / 60.0, color=color, linestyle=":", alpha=0.8)
        ax.set_ylabel(label)
    for ax in axes:
        if day.played.duration_s > RAMP_FROM_START_S:
            ax.axvspan(RAMP_FROM_START_S / 60.0, RAMP_FROM_START_S / 60.0 + 0.2,
                       color="black", alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    axes[1].set_title("replicas (dotted: when each side first asked for more; black: the ramp "
                      "starts)", fontsize=10)
    axes[2].set_title("nodes (the predictive side orders them from its forecast; the reactive "
                      "side's come from cluster-autoscaler, for pending pods)", fontsize=10)
    axes[-1].set_xlabel("simulated minutes from 08:25")
    fig.savefig(path, dpi=100)


def _draw_demand(ax: Axes, sides: list[loop.Side], day: DemoDay) -> None:
    trace = day.played
    ax.step(np.append(trace.start_s, trace.start_s[-1] + trace.step_s) / 60.0,
            np.append(trace.rate, trace.rate[-1]), where="post", color="black",
            label="demand (req/s)")
    for side in sides:
        if side.name != "predictive":
            continue
        lead = loop.POD_STARTUP_S + loop.KEDA_INTERVAL_S
        times = (np.array([row.time_s for row in side.rows]) + lead) / 60.0
        mean = np.array([row.forecast for row in side.rows])
        upper = np.array(side.forecast_upper)
        ax.fill_between(times, mean, upper, color=COLORS["predictive"], alpha=0.25,
                        step="post", label="forecast band (mean to 95% bound), "
                                           "at the time it was forecast for")
        ax.step(times, mean, where="post", color=COLORS["predictive"], linewidth=0.8)
    ax.set_ylabel("requests/s")
    ax.set_title("demand, and the predictive side's forecast one pod lead time ahead",
                 fontsize=10)
