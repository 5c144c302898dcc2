"""Prometheus text exposition written the way prometheus_client writes it.

The emulated vLLM page must match real pages in layout, not only in content, because the
adapters parse what vLLM really serves, and vLLM pages are written by prometheus_client (facts
read from its output on real vLLM pages):

- label names sorted (``engine`` < ``le`` < ``model_name``);
- histogram samples ``_bucket`` ... ``+Inf``, ``_count``, ``_sum`` (the V0 engine put ``_sum``
  first);
- floats in Go style (``1.0``, ``1.7382173358407154e+09``);
- every counter and histogram followed by a separate ``<name>_created`` gauge family with the
  same HELP (V1 only: V0 called ``disable_created_metrics()``);
- the default registry puts ``python_gc_*``, ``python_info`` and ``process_*`` first.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise

__all__ = ["HistSeries", "Histogram", "PageWriter", "Series", "format_value", "runtime_header"]


class Histogram:
    """A Prometheus-style histogram: per-bucket counts, sum and count (no labels, no lock)."""

    __slots__ = ("_counts", "bounds", "count", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        values = tuple(float(b) for b in bounds)
        if not all(math.isfinite(b) for b in values):
            raise ValueError(f"histogram bounds must be finite (+Inf is implicit), got {values}")
        if any(b >= c for b, c in pairwise(values)):
            raise ValueError(f"histogram bounds must be strictly ascending, got {values}")
        self.bounds = values
        self._counts = [0.0] * (len(values) + 1)
        self.sum = 0.0
        self.count = 0.0

    def observe(self, value: float, n: float = 1.0) -> None:
        """Record ``n`` observations of ``value`` (``le`` semantics: value <= bound)."""
        self._counts[bisect_left(self.bounds, value)] += n
        self.sum += value * n
        self.count += n

    def cumulative(self) -> tuple[float, ...]:
        """Cumulative counts for each bound, then for +Inf (len(bounds) + 1 values)."""
        out: list[float] = []
        running = 0.0
        for count in self._counts:
            running += count
            out.append(running)
        return tuple(out)

    def merged(self, other: Histogram) -> Histogram:
        """A new histogram holding the observations of both (same bounds required)."""
        if other.bounds != self.bounds:
            raise ValueError("cannot merge histograms with different bounds")
        out = Histogram(self.bounds)
        out._counts = [a + b for a, b in zip(self._counts, other._counts, strict=True)]
        out.sum = self.sum + other.sum
        out.count = self.count + other.count
        return out



def format_value(value: float) -> str:
    """Format a float the way prometheus_client does (Go style: 1.0, 1.7e+09, +Inf, NaN)."""
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if math.isnan(value):
        return "NaN"
    text = repr(float(value))
    dot = text.find(".")
    if value > 0 and dot > 6:
        digits = (text[0] + "." + text[1:dot] + text[dot + 1:]).rstrip("0").rstrip(".")
        return f"{digits}e+{dot - 1:02d}"
    return text


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


Series = list[tuple[dict[str, str], float]]
HistSeries = list[tuple[dict[str, str], Histogram]]


class PageWriter:
    """Accumulates page lines family by family in prometheus_client's layout."""

    def __init__(self, created: bool, sum_first: bool) -> None:
        self.lines: list[str] = []
        self.created = created
        self.sum_first = sum_first

    def _head(self, name: str, help_text: str | None, typ: str) -> None:
        if help_text is not None:
            self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {typ}")

    def gauge(self, name: str, help_text: str | None, series: Series) -> None:
        self._head(name, help_text, "gauge")
        self.lines.extend(f"{name}{_labels(lab)} {format_value(v)}" for lab, v in series)

    def counter(self, base: str, help_text: str, series: Series, created: float) -> None:
        self._head(base + "_total", help_text, "counter")
        self.lines.extend(f"{base}_total{_labels(lab)} {format_value(v)}" for lab, v in series)
        self._created(base, help_text, [lab for lab, _ in series], created)

    def _created(self, base: str, help_text: str, labelsets: Iterable[dict[str, str]],
                 created: float) -> None:
        if self.created:
            self.gauge(base + "_created", help_text, [(lab, created) for lab in labelsets])

    def histogram(self, name: str, help_text: str, series: HistSeries, created: float) -> None:
        self._head(name, help_text, "histogram")
        for lab, hist in series:
            sum_line = f"{name}_sum{_labels(lab)} {format_value(hist.sum)}"
            if self.sum_first:
                self.lines.append(sum_line)
            bounds = [*hist.bounds, math.inf]
            for bound, cum in zip(bounds, hist.cumulative(), strict=True):
                le = {**lab, "le": format_value(bound)}
                self.lines.append(f"{name}_bucket{_labels(le)} {format_value(cum)}")
            self.lines.append(f"{name}_count{_labels(lab)} {format_value(hist.count)}")
            if not self.sum_first:
                self.lines.append(sum_line)
        self._created(name, help_text, [lab for lab, _ in series], created)


def runtime_header(out: PageWriter) -> None:
    """The python_gc_*, python_info and process_* families of the default registry."""
    out.created, keep = False, out.created
    gc = {"0": (1.2e4, 0.0, 1.9e3), "1": (3.1e3, 0.0, 1.7e2), "2": (9.0e2, 0.0, 1.4e1)}
    for idx, (name, help_text) in enumerate((
        ("python_gc_objects_collected", "Objects collected during gc"),
        ("python_gc_objects_uncollectable", "Uncollectable objects found during GC"),
        ("python_gc_collections", "Number of times this generation was collected"),
    )):
        out.counter(name, help_text, [({"generation": g}, v[idx]) for g, v in gc.items()], 0.0)
    out.gauge("python_info", "Python platform information", [(
        {"implementation": "CPython", "major": "3", "minor": "12", "patchlevel": "9",
         "version": "3.12.9"}, 1.0)])
    for name, help_text, value in (
        ("process_virtual_memory_bytes", "Virtual memory size in bytes.", 3.1e10),
        ("process_resident_memory_bytes", "Resident memory size in bytes.", 2.2e9),
        ("process_start_time_seconds",
         "Start time of the process since unix epoch in seconds.", 1.74262400557e9),
    ):
        out.gauge(name, help_text, [({}, value)])
    out.counter("process_cpu_seconds", "Total user and system CPU time spent in seconds.",
                [({}, 439.72)], 0.0)
    out.gauge("process_open_fds", "Number of open file descriptors.", [({}, 45.0)])
    out.gauge("process_max_fds", "Maximum number of open file descriptors.", [({}, 1048576.0)])
    out.created = keep

