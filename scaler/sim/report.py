"""Write a replay's outputs: summary.json, decisions.csv, report.md and report.png.

Why these four: ``summary.json`` is for machines (the bench and CI compare runs on it),
``decisions.csv`` keeps every decision tick so a run can be re-plotted or checked without
replaying it, and ``report.md`` with ``report.png`` is what a person reads first. Values are
written so that they read back exactly: floats with ``repr`` (shortest round-trip form), an
absent forecast (NaN) as an empty cell, and non-finite numbers in JSON as ``null`` (JSON has no
NaN or infinity).

The single run's figure is drawn by :mod:`scaler.sim.report_plot` (each time bucket as a
min-max band around its mean); the policy comparison's figure is here. report.md and the
command's headline say the knob, the replica bounds and, for a run below its SLO target, the
likely cause (:mod:`scaler.sim.slo_causes`). Counts are written whole.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from scaler.sim.policy_catalog import UNBOUNDED
from scaler.sim.report_plot import PLOT_POINTS, plot_report
from scaler.sim.report_plot import bucket_max as _bucket_max
from scaler.sim.report_plot import bucket_starts as _bucket_starts
from scaler.sim.report_plot import column as _column
from scaler.sim.report_plot import finish as _finish
from scaler.sim.report_plot import interval_s as _interval_s
from scaler.sim.report_plot import steps as _steps
from scaler.sim.report_plot import time_axis as _time_axis
from scaler.sim.results import DecisionRow, ReplayResult
from scaler.sim.slo_causes import slo_verdict

__all__ = [
    "CSV_COLUMNS",
    "PLOT_POINTS",
    "bounds_text",
    "knob_text",
    "plot_report",
    "read_decisions",
    "replica_cap",
    "write_decisions",
    "write_outputs",
    "write_report_md",
    "write_summary",
]

CSV_COLUMNS = ("time_s", "desired_replicas", "ready_replicas", "desired_nodes", "ready_nodes",
               "demand", "forecast", "slo_misses")


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
    """A title, the verdict when below target, knob and bounds, the results, plot, parameters."""
    verdict = slo_verdict(result, max_replicas=replica_cap(result))
    lines = [f"# Replay: {result.policy} on {trace_name(result)}", "",
             *([f"**{verdict}**", ""] if verdict else []),
             f"Knob: {knob_text(result.parameters)}. {_capital(bounds_text(result))}.", "",
             "## Results", "", *_table(_RESULT_HEADER, [_result_cells(result)]), "",
             f"![{result.policy} on {trace_name(result)}]({plot_name})", "",
             "## Parameters", "", *_parameter_table(result.parameters), ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def trace_name(result: ReplayResult) -> str:
    """The trace a result was replayed on, from ``parameters["trace"]`` ("unnamed trace")."""
    return result.trace_name()


def knob_text(parameters: dict[str, Any]) -> str:
    """``name=value`` of the policy's main knob, "-" for a policy without one (the oracle)."""
    name, value = parameters.get("knob"), _parameter_value(parameters.get("knob_value"))
    if name in (None, "", "none") or value == "-":
        return "-"
    return f"{name}={value}"


def replica_cap(result: ReplayResult) -> int | None:
    """The replica cap the run's policy had; None for a policy bounds do not apply to."""
    cap = result.parameters.get("max_replicas")
    return None if result.policy in UNBOUNDED or cap is None else int(cap)


def bounds_text(result: ReplayResult) -> str:
    """The replica bounds as outputs say them: "1-42 (cap: 2x the oracle's peak of 21)"."""
    if result.policy in UNBOUNDED:
        return f"replica bounds not used by {result.policy}"
    cap = replica_cap(result)
    if cap is None:
        return "replica bounds not recorded"
    low, source = result.parameters.get("min_replicas", 1), result.parameters.get(
        "max_replicas_from")
    return f"replicas {low}-{cap}" + (f" (cap: {source})" if source else "")


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


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
    """A parameter as a person reads it: absent values (None, NaN, the oracle's knob "none")
    as "-"."""
    if value is None or value == "none" or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str)
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"
    return [line(header), line(["---"] * len(header)), *(line(row) for row in rows)]


def _count(value: float) -> str:
    """Counts are whole: the fluid model's expected request count is rounded."""
    return str(round(value)) if math.isfinite(value) else "n/a"


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.2f} %" if math.isfinite(fraction) else "n/a"


def _seconds(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "n/a"


def _trace_names(results: Sequence[ReplayResult]) -> str:
    return ", ".join(dict.fromkeys(trace_name(r) for r in results))


# --------------------------------------------------------------------------- plots


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
