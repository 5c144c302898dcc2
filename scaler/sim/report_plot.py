"""A replay's report.png: demand and forecast, replicas, nodes and SLO misses over time.

The plot uses matplotlib's Agg canvas on a bare ``Figure`` (no pyplot, no display, no global
state), one figure with four panels sharing the time axis. Fourteen days of 15 s decisions are
80,640 rows, far more points than a figure has pixels, so each series is reduced to at most
``PLOT_POINTS`` buckets first. Each bucket is drawn as a *band* from its minimum to its maximum
with a line at its mean: a maximum alone hides flapping (a fleet falling from 40 ready replicas
to 1 every nine minutes looks "pinned at 40" when each ten-minute bucket shows its top), a mean
alone hides spikes, the band shows both. Every bucketed panel says so in its legend and title.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, MultipleLocator

from scaler.sim.results import DecisionRow, ReplayResult

__all__ = ["PLOT_POINTS", "Band", "bucket_band", "bucket_max", "bucket_mean", "bucket_min",
           "bucket_starts", "column", "finish", "interval_s", "plot_report", "report_figure",
           "steps", "time_axis"]

PLOT_POINTS = 2000  # buckets per series; a 12-inch figure at 100 dpi is 1200 pixels wide

FloatArray = npt.NDArray[np.float64]
Starts = npt.NDArray[np.intp]


# --------------------------------------------------------------------------- downsampling


def bucket_starts(n: int, max_points: int = PLOT_POINTS) -> Starts:
    """Start index of each bucket of ``ceil(n / max_points)`` consecutive rows."""
    return np.arange(0, n, max(1, math.ceil(n / max_points)), dtype=np.intp)


def bucket_max(values: FloatArray, starts: Starts) -> FloatArray:
    return np.maximum.reduceat(values, starts)


def bucket_min(values: FloatArray, starts: Starts) -> FloatArray:
    return np.minimum.reduceat(values, starts)


def bucket_mean(values: FloatArray, starts: Starts) -> FloatArray:
    """Mean of the non-NaN values of each bucket; NaN where a bucket has none."""
    present = ~np.isnan(values)
    sums = np.add.reduceat(np.where(present, values, 0.0), starts)
    counts = np.add.reduceat(present.astype(np.float64), starts)
    return np.where(counts > 0, sums / np.maximum(counts, 1.0), np.nan)


@dataclass(frozen=True)
class Band:
    """One series per bucket: its lowest, mean and highest value."""

    low: FloatArray
    mean: FloatArray
    high: FloatArray


def bucket_band(values: FloatArray, starts: Starts) -> Band:
    """Min, mean and max of each bucket (NaNs ignored; all-NaN buckets stay NaN)."""
    with np.errstate(invalid="ignore"):
        low = np.fmin.reduceat(values, starts)
        high = np.fmax.reduceat(values, starts)
    return Band(low, bucket_mean(values, starts), high)


def column(rows: Sequence[DecisionRow], name: str) -> FloatArray:
    return np.fromiter((getattr(row, name) for row in rows), dtype=np.float64, count=len(rows))


def interval_s(times: FloatArray) -> float:
    """The decision interval: the median step between ticks (15 s when unknown)."""
    return float(np.median(np.diff(times))) if len(times) > 1 else 15.0


def steps(values: FloatArray) -> FloatArray:
    """Bucket values with the last repeated, to pair with bucket edges in a 'post' step."""
    return np.append(values, values[-1])


# --------------------------------------------------------------------------- figure


def plot_report(result: ReplayResult, path: Path) -> None:
    """Write :func:`report_figure` as a 1200 x 1100 PNG."""
    report_figure(result).savefig(path, dpi=100)


def report_figure(result: ReplayResult) -> Figure:
    """Four panels over time (hours): demand and forecast, replicas, nodes, SLO misses."""
    fig = Figure(figsize=(12, 11), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(4, 1, sharex=True)
    slo = result.slo_attainment
    fig.suptitle(f"{result.policy} on {result.trace_name()}: SLO attainment "
                 f"{f'{100 * slo:.2f} %' if math.isfinite(slo) else 'n/a'}, "
                 f"{result.gpu_hours:.1f} GPU-hours, {result.node_hours:.1f} node-hours",
                 fontsize=13)
    if result.decisions:
        _Panels(result.decisions).draw(axes)
    else:
        for ax in axes:
            ax.text(0.5, 0.5, "no decisions", ha="center", va="center", transform=ax.transAxes)
    axes[-1].set_xlabel("time (hours)")
    return fig


class _Panels:
    """The decision rows cut into buckets, and how each panel draws them."""

    def __init__(self, rows: Sequence[DecisionRow]) -> None:
        self.rows = rows
        times = column(rows, "time_s")
        self.interval_s = interval_s(times)
        self.starts = bucket_starts(len(rows))
        self.bucketed = len(self.starts) < len(rows)
        # step plots run to the end of the last interval
        self.hours = np.append(times[self.starts], times[-1] + self.interval_s) / 3600.0
        minutes = len(rows) / len(self.starts) * self.interval_s / 60
        self.note = f" ({minutes:.0f} min buckets: line = mean, band = min-max)"

    def draw(self, axes: Sequence[Axes]) -> None:
        self.series(axes[0], "demand", "demand", "tab:blue")
        if not np.isnan(column(self.rows, "forecast")).all():
            self.series(axes[0], "forecast", "forecast", "tab:orange")
        self.title(axes[0], "Demand and forecast", "requests/s")
        for ax, what in ((axes[1], "replicas"), (axes[2], "nodes")):
            self.series(ax, f"ready_{what}", f"ready {what}", "tab:green")
            self.series(ax, f"desired_{what}", f"desired {what}", "tab:purple")
            self.title(ax, f"Desired vs ready {what}", what)
            ax.set_ylim(bottom=0)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        self.series(axes[3], "slo_misses", "requests missing the TTFT SLO", "tab:red")
        self.title(axes[3], f"SLO misses per {self.interval_s:g} s decision interval", "requests")
        axes[3].set_ylim(bottom=0)
        time_axis(axes[3], self.hours)

    def series(self, ax: Axes, name: str, label: str, color: str) -> None:
        """A band from each bucket's min to its max, and a line at its mean."""
        band = bucket_band(column(self.rows, name), self.starts)
        if self.bucketed:
            ax.fill_between(self.hours, steps(band.low), steps(band.high), step="post",
                            alpha=0.25, color=color, linewidth=0,
                            label=f"{label}: min-max per bucket")
            label = f"{label}: mean per bucket"
        ax.step(self.hours, steps(band.mean), where="post", color=color, linewidth=1.0,
                label=label)

    def title(self, ax: Axes, title: str, unit: str) -> None:
        ax.set_ylabel(unit)
        ax.set_title(title + (self.note if self.bucketed else ""), loc="left")
        finish(ax, columns=2)  # band and mean of a series side by side: half the height


def time_axis(ax: Axes, hours: FloatArray) -> None:
    """No margins; ticks on whole days (weeks past three weeks) once the run spans two days."""
    ax.set_xlim(hours[0], hours[-1])
    span = hours[-1] - hours[0]
    if span >= 48:
        ax.xaxis.set_major_locator(MultipleLocator(24.0 if span <= 21 * 24 else 168.0))


def finish(ax: Axes, *, columns: int = 1) -> None:
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=9, ncols=columns)
