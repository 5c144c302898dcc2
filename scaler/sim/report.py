"""Write a replay's outputs: summary.json, decisions.csv, report.md and report.png.

Why these four: ``summary.json`` is for machines (the bench and CI compare runs on it),
``decisions.csv`` keeps every decision tick so a run can be re-plotted or checked without
replaying it, and ``report.md`` with ``report.png`` is what a person reads first. Values are
written so that they read back exactly: floats with ``repr`` (shortest round-trip form), an
absent forecast (NaN) as an empty cell, and non-finite numbers in JSON as ``null`` (JSON has no
NaN or infinity).

The plot uses matplotlib's Agg canvas on a bare ``Figure`` (no pyplot, no display, no global
state), one figure with four panels sharing the time axis. Fourteen days of 15 s decisions are
80,640 rows, far more points than a figure has pixels, so each series is reduced to at most
``PLOT_POINTS`` buckets first: replicas, nodes and SLO misses keep each bucket's *maximum* (a
one-tick spike stays visible), demand is drawn as its bucket mean inside a min-max band, and the
forecast as its bucket mean. The trace's name is not a field of
:class:`~scaler.sim.results.ReplayResult`; it is read from ``parameters["trace"]``.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, MultipleLocator

from scaler.sim.results import DecisionRow, ReplayResult

__all__ = [
    "CSV_COLUMNS",
    "PLOT_POINTS",
    "plot_report",
    "read_decisions",
    "write_decisions",
    "write_outputs",
    "write_report_md",
    "write_summary",
]

CSV_COLUMNS = ("time_s", "desired_replicas", "ready_replicas", "desired_nodes", "ready_nodes",
               "demand", "forecast", "slo_misses")
PLOT_POINTS = 2000  # buckets per series; a 12-inch figure at 100 dpi is 1200 pixels wide

FloatArray = npt.NDArray[np.float64]


# --------------------------------------------------------------------------- files


def write_outputs(result: ReplayResult, out_dir: Path) -> dict[str, Path]:
    """Write the four files into ``out_dir`` (created if needed); returns them by kind.

    Keys: ``summary`` (summary.json), ``decisions`` (decisions.csv), ``report`` (report.md),
    ``plot`` (report.png).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"summary": out_dir / "summary.json", "decisions": out_dir / "decisions.csv",
             "report": out_dir / "report.md", "plot": out_dir / "report.png"}
    write_summary(result, paths["summary"])
    write_decisions(result.decisions, paths["decisions"])
    write_report_md(result, paths["report"], plot_name=paths["plot"].name)
    plot_report(result, paths["plot"])
    return paths


def write_summary(result: ReplayResult, path: Path) -> None:
    """``result.summary()`` as indented JSON; NaN and infinities become ``null``."""
    text = json.dumps(_json_safe(result.summary()), indent=2, allow_nan=False, default=str)
    path.write_text(text + "\n", encoding="utf-8")


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def write_decisions(rows: Sequence[DecisionRow], path: Path) -> None:
    """One CSV line per decision tick, columns ``CSV_COLUMNS``; NaN forecast left empty."""
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows(_csv_cells(row) for row in rows)


def _csv_cells(row: DecisionRow) -> tuple[str, ...]:
    forecast = "" if math.isnan(row.forecast) else repr(row.forecast)
    return (repr(row.time_s), str(row.desired_replicas), str(row.ready_replicas),
            str(row.desired_nodes), str(row.ready_nodes), repr(row.demand), forecast,
            repr(row.slo_misses))


def read_decisions(path: Path) -> list[DecisionRow]:
    """Read a decisions.csv back (an empty forecast cell is NaN)."""
    with path.open(newline="", encoding="utf-8") as src:
        reader = csv.reader(src)
        header = tuple(next(reader, ()))
        if header[:7] != CSV_COLUMNS[:7]:
            raise ValueError(f"{path}: header {','.join(header)!r} is not a decisions.csv header")
        return [_row_from_cells(cells, has_misses=len(header) > 7) for cells in reader]


def _row_from_cells(cells: list[str], *, has_misses: bool) -> DecisionRow:
    return DecisionRow(
        time_s=float(cells[0]), desired_replicas=int(cells[1]), ready_replicas=int(cells[2]),
        desired_nodes=int(cells[3]), ready_nodes=int(cells[4]), demand=float(cells[5]),
        forecast=float(cells[6]) if cells[6] else math.nan,
        slo_misses=float(cells[7]) if has_misses else 0.0)


# --------------------------------------------------------------------------- markdown

_RESULT_HEADER = ("requests", "SLO attainment", "TTFT p50 (s)", "TTFT p95 (s)", "TTFT p99 (s)",
                  "GPU-hours", "node-hours", "scale events")


def write_report_md(result: ReplayResult, path: Path, *, plot_name: str = "report.png") -> None:
    """A title, the results table, the plot and the parameters table."""
    lines = [f"# Replay: {result.policy} on {trace_name(result)}", "",
             "## Results", "", *_table(_RESULT_HEADER, [_result_cells(result)]), "",
             f"![{result.policy} on {trace_name(result)}]({plot_name})", "",
             "## Parameters", "", *_parameter_table(result.parameters), ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def trace_name(result: ReplayResult) -> str:
    """The trace a result was replayed on, from ``parameters["trace"]`` ("unnamed trace")."""
    name = result.parameters.get("trace")
    return str(name) if name not in (None, "") else "unnamed trace"


def _result_cells(result: ReplayResult) -> list[str]:
    return [_count(result.requests), _percent(result.slo_attainment),
            _seconds(result.ttft_p50_s), _seconds(result.ttft_p95_s),
            _seconds(result.ttft_p99_s), f"{result.gpu_hours:.2f}", f"{result.node_hours:.2f}",
            str(result.scale_events)]


def _parameter_table(parameters: dict[str, Any]) -> list[str]:
    if not parameters:
        return ["(none)"]
    rows = [[str(key), _parameter_value(value)] for key, value in parameters.items()]
    return _table(("parameter", "value"), rows)


def _parameter_value(value: Any) -> str:
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str)
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"
    return [line(header), line(["---"] * len(header)), *(line(row) for row in rows)]


def _count(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.2f} %" if math.isfinite(fraction) else "n/a"


def _seconds(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "n/a"


def _trace_names(results: Sequence[ReplayResult]) -> str:
    return ", ".join(dict.fromkeys(trace_name(r) for r in results))


# --------------------------------------------------------------------------- downsampling


def _bucket_starts(n: int, max_points: int = PLOT_POINTS) -> npt.NDArray[np.intp]:
    """Start index of each bucket of ``ceil(n / max_points)`` consecutive rows."""
    return np.arange(0, n, max(1, math.ceil(n / max_points)), dtype=np.intp)


def _bucket_max(values: FloatArray, starts: npt.NDArray[np.intp]) -> FloatArray:
    return np.maximum.reduceat(values, starts)


def _bucket_min(values: FloatArray, starts: npt.NDArray[np.intp]) -> FloatArray:
    return np.minimum.reduceat(values, starts)


def _bucket_mean(values: FloatArray, starts: npt.NDArray[np.intp]) -> FloatArray:
    """Mean of the non-NaN values of each bucket; NaN where a bucket has none."""
    present = ~np.isnan(values)
    sums = np.add.reduceat(np.where(present, values, 0.0), starts)
    counts = np.add.reduceat(present.astype(np.float64), starts)
    return np.where(counts > 0, sums / np.maximum(counts, 1.0), np.nan)


def _column(rows: Sequence[DecisionRow], name: str) -> FloatArray:
    return np.fromiter((getattr(row, name) for row in rows), dtype=np.float64, count=len(rows))


def _interval_s(times: FloatArray) -> float:
    """The decision interval: the median step between ticks (15 s when unknown)."""
    return float(np.median(np.diff(times))) if len(times) > 1 else 15.0


# --------------------------------------------------------------------------- plots


def plot_report(result: ReplayResult, path: Path) -> None:
    """Four panels over time (hours): demand and forecast, replicas, nodes, SLO misses."""
    fig = Figure(figsize=(12, 11), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(4, 1, sharex=True)
    fig.suptitle(f"{result.policy} on {trace_name(result)}: "
                 f"SLO attainment {_percent(result.slo_attainment)}, "
                 f"{result.gpu_hours:.1f} GPU-hours, {result.node_hours:.1f} node-hours",
                 fontsize=13)
    rows = result.decisions
    if rows:
        _draw_panels(axes, rows)
    else:
        for ax in axes:
            ax.text(0.5, 0.5, "no decisions", ha="center", va="center", transform=ax.transAxes)
    axes[-1].set_xlabel("time (hours)")
    fig.savefig(path, dpi=100)


def _draw_panels(axes: Sequence[Axes], rows: Sequence[DecisionRow]) -> None:
    times = _column(rows, "time_s")
    interval = _interval_s(times)
    starts = _bucket_starts(len(rows))
    # step plots run to the end of the last interval
    hours = np.append(times[starts], times[-1] + interval) / 3600.0
    per_bucket = len(rows) / len(starts)
    _draw_demand(axes[0], hours, _column(rows, "demand"), _column(rows, "forecast"), starts)
    _draw_pair(axes[1], hours, _column(rows, "desired_replicas"),
               _column(rows, "ready_replicas"), starts, "replicas")
    _draw_pair(axes[2], hours, _column(rows, "desired_nodes"), _column(rows, "ready_nodes"),
               starts, "nodes")
    _draw_misses(axes[3], hours, _column(rows, "slo_misses"), starts, interval, per_bucket)
    _time_axis(axes[3], hours)


def _time_axis(ax: Axes, hours: FloatArray) -> None:
    """No margins; ticks on whole days (weeks past three weeks) once the run spans two days."""
    ax.set_xlim(hours[0], hours[-1])
    span = hours[-1] - hours[0]
    if span >= 48:
        ax.xaxis.set_major_locator(MultipleLocator(24.0 if span <= 21 * 24 else 168.0))


def _steps(values: FloatArray) -> FloatArray:
    """Bucket values with the last repeated, to pair with bucket edges in a 'post' step."""
    return np.append(values, values[-1])


def _draw_demand(ax: Axes, hours: FloatArray, demand: FloatArray, forecast: FloatArray,
                 starts: npt.NDArray[np.intp]) -> None:
    if len(starts) < len(demand):
        ax.fill_between(hours, _steps(_bucket_min(demand, starts)),
                        _steps(_bucket_max(demand, starts)), step="post", alpha=0.25,
                        color="tab:blue", linewidth=0, label="demand, min-max in bucket")
    ax.step(hours, _steps(_bucket_mean(demand, starts)), where="post", color="tab:blue",
            linewidth=1.0, label="demand")
    if not np.isnan(forecast).all():
        ax.step(hours, _steps(_bucket_mean(forecast, starts)), where="post",
                color="tab:orange", linewidth=1.0, label="forecast")
    ax.set_ylabel("requests/s")
    ax.set_title("Demand and forecast", loc="left")
    _finish(ax)


def _draw_pair(ax: Axes, hours: FloatArray, desired: FloatArray, ready: FloatArray,
               starts: npt.NDArray[np.intp], what: str) -> None:
    ax.fill_between(hours, 0, _steps(_bucket_max(ready, starts)), step="post", alpha=0.3,
                    color="tab:green", linewidth=0, label=f"ready {what}")
    ax.step(hours, _steps(_bucket_max(desired, starts)), where="post", color="tab:purple",
            linewidth=1.0, label=f"desired {what}")
    ax.set_ylabel(what)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"Desired vs ready {what}", loc="left")
    _finish(ax)


def _draw_misses(ax: Axes, hours: FloatArray, misses: FloatArray, starts: npt.NDArray[np.intp],
                 interval_s: float, per_bucket: float) -> None:
    ax.fill_between(hours, 0, _steps(_bucket_max(misses, starts)), step="post", color="tab:red",
                    alpha=0.6, linewidth=0.5, label="requests missing the TTFT SLO")
    title = f"SLO misses per {interval_s:g} s decision interval"
    if per_bucket > 1:
        title += f" (max over {per_bucket * interval_s / 60:.0f} min buckets)"
    ax.set_ylabel("requests")
    ax.set_ylim(bottom=0)
    ax.set_title(title, loc="left")
    _finish(ax)


def _finish(ax: Axes) -> None:
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=9)


def plot_comparison(results: Sequence[ReplayResult], path: Path) -> None:
    """Ready replicas of every policy over time, and GPU-hours vs SLO attainment as bars."""
    fig = Figure(figsize=(12, 8), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, height_ratios=[2, 1])
    fig.suptitle(f"Policies compared on {_trace_names(results)}", fontsize=13)
    for result in results:
        _draw_ready_replicas(top, result)
    top.yaxis.set_major_locator(MaxNLocator(integer=True))
    runs = [r.decisions for r in results if r.decisions]
    if runs:
        _time_axis(top, np.array([min(d[0].time_s for d in runs),
                                  max(d[-1].time_s for d in runs)]) / 3600.0)
    top.set_xlabel("time (hours)")
    top.set_ylabel("ready replicas")
    top.set_title("Ready replicas (max per bucket)", loc="left")
    _finish(top)
    _draw_gpu_hours(bottom, results)
    fig.savefig(path, dpi=100)


def _draw_ready_replicas(ax: Axes, result: ReplayResult) -> None:
    rows = result.decisions
    if not rows:
        return
    times = _column(rows, "time_s")
    starts = _bucket_starts(len(rows))
    hours = np.append(times[starts], times[-1] + _interval_s(times)) / 3600.0
    ax.step(hours, _steps(_bucket_max(_column(rows, "ready_replicas"), starts)), where="post",
            linewidth=1.0, label=result.policy)


def _draw_gpu_hours(ax: Axes, results: Sequence[ReplayResult]) -> None:
    names = [r.policy for r in results]
    bars = ax.barh(names, [r.gpu_hours for r in results], color="tab:blue", alpha=0.7)
    ax.bar_label(bars, labels=[f"{r.gpu_hours:.1f} GPU-h, SLO {_percent(r.slo_attainment)}"
                               for r in results], padding=4, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("GPU-hours")
    ax.set_xlim(right=max(1.0, *(r.gpu_hours for r in results)) * 1.35)
    ax.set_title("GPU-hours and SLO attainment", loc="left")
    ax.grid(True, axis="x", alpha=0.3)
