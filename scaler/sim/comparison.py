"""``bench.md``: the policies of one `scaler bench` run compared, knob by knob.

Apart from the single-run outputs (:mod:`scaler.sim.report`, whose table cells and figure
it reuses): one row per policy at its chosen knob, with its cost as a ratio of the oracle
(the floor) and of the best reactive policy (the baseline a user would run without this
scaler).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from scaler.sim.report import (
    _RESULT_HEADER,
    _result_cells,
    _table,
    _trace_names,
    plot_comparison,
)
from scaler.sim.results import ReplayResult

__all__ = ["ORACLE", "write_comparison"]

ORACLE = "oracle"  # the policy the comparison's GPU-hour ratio is taken against


def write_comparison(results: Sequence[ReplayResult], path_md: Path,
                     path_png: Path | None = None, *, best_reactive: str | None = None) -> None:
    """Compare policies on one trace: a markdown table, and optionally a figure.

    One row per result: its knob as chosen (flagged when at its grid's edge), the report's
    columns, GPU-hours as a ratio of the row whose policy is ``"oracle"`` when there is one,
    and GPU- and node-hours as ratios of ``best_reactive``'s row when one is named.
    """
    if not results:
        raise ValueError("write_comparison needs at least one result")
    oracle = next((r for r in results if r.policy == ORACLE), None)
    best = next((r for r in results if r.policy == best_reactive), None)
    ratios = [(f"{unit} / {label}", unit, ref) for label, ref, units in (
        ("oracle", oracle, ("GPU-hours",)), ("best reactive", best, ("GPU-hours", "node-hours")))
        if ref is not None for unit in units]
    header = ["policy", "knob", *_RESULT_HEADER, *(title for title, _, _ in ratios)]
    rows = [[r.policy, _knob(r), *_result_cells(r),
             *(_ratio(r, ref, unit) for _, unit, ref in ratios)] for r in results]
    lines = [f"# Policies compared on {_trace_names(results)}", "", *_table(header, rows), ""]
    if best_reactive is not None or any(r.policy.startswith("reactive") for r in results):
        lines += [f"Best reactive policy meeting the SLO: {best_reactive or 'none'}.", ""]
    if path_png is not None:
        plot_comparison(results, path_png)
        lines += [f"![comparison]({_relative(path_png, path_md.parent)})", ""]
    path_md.write_text("\n".join(lines), encoding="utf-8")


def _knob(result: ReplayResult) -> str:
    """``name=value`` of the run's knob ("-" when it has none), flagged at a grid's edge."""
    name, value = result.parameters.get("knob"), result.parameters.get("knob_value")
    if name in (None, "none") or not isinstance(value, int | float) or math.isnan(value):
        return "-"
    return f"{name}={value:g}" + (" (grid edge)" if result.parameters.get("knob_at_edge") else "")


def _ratio(result: ReplayResult, reference: ReplayResult, unit: str) -> str:
    key = "gpu_hours" if unit == "GPU-hours" else "node_hours"
    value, base = getattr(result, key), getattr(reference, key)
    return f"{value / base:.3f}" if base > 0 else "n/a"


def _relative(path: Path, start: Path) -> str:
    try:
        return path.resolve().relative_to(start.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()
