"""Time-window math over successive snapshots of one pod: counter rates, histogram quantiles.

Why here and not in PromQL: the scaler reads pods directly (Prometheus may be absent or scrape
too rarely), so it must turn cumulative counters and histograms into per-window numbers itself,
with the same semantics Prometheus users know:

- counters: per-step increases summed over the window; a decrease means the counter restarted
  (pod or engine restart), so that step's increase is the new value (Prometheus' reset rule).
  Unlike PromQL ``rate()`` there is no extrapolation to the window edges: the rate is the
  increase divided by the time actually covered by the samples.
- histograms: the increase of every bucket over the window (a step where the count or any
  bucket went down, or the bounds changed, is a reset), then ``histogram_quantile``'s linear
  interpolation: the first bucket starts at 0 when its upper bound is positive, a rank in the
  ``+Inf`` bucket answers the highest finite bound, buckets are made monotonic first (checked
  bit for bit against promtool in the tests). Deliberate differences: no observations gives
  None (Prometheus: NaN); a rank of 0 in an empty first bucket gives that bucket's lower bound
  (Prometheus: 0/0 = NaN); a histogram cut before its ``+Inf`` bucket (truncated page) is
  interpolated within the buckets it has (Prometheus: NaN).
- steps where a counter or histogram is missing from one of the two snapshots are skipped, and
  only steps whose bounds equal the latest snapshot's are used for quantiles.

Pure and synchronous: no I/O, no clock; the caller passes monotonic seconds.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

from adapters.formats.vllm import HistogramSnapshot, VllmSnapshot

__all__ = ["HistogramIncrease", "PodWindow", "histogram_quantile", "merged_quantile"]


@dataclass(frozen=True, slots=True)
class _Point:
    t_s: float
    snap: VllmSnapshot


@dataclass(frozen=True, slots=True)
class HistogramIncrease:
    """A histogram's per-bucket increase over a window (cumulative across buckets)."""

    bounds: tuple[float, ...]
    cumulative: tuple[float, ...]
    sum: float
    count: float


def _counter_increase(prev: float, cur: float) -> float:
    return cur - prev if cur >= prev else cur


def _is_reset(prev: HistogramSnapshot, cur: HistogramSnapshot) -> bool:
    if prev.bounds != cur.bounds or cur.count < prev.count:
        return True
    return any(c < p for p, c in zip(prev.cumulative, cur.cumulative, strict=True))


def histogram_quantile(q: float, bounds: tuple[float, ...],
                       cumulative: tuple[float, ...]) -> float | None:
    """Prometheus' bucket interpolation for ascending ``bounds`` and cumulative counts.

    Returns None when there are no observations, or only a ``+Inf`` bucket.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be within [0, 1], got {q!r}")
    if not bounds or (len(bounds) == 1 and math.isinf(bounds[0])):
        return None
    monotonic: list[float] = []
    for value in cumulative:
        monotonic.append(max(value, monotonic[-1]) if monotonic else value)
    total = monotonic[-1]
    if not total > 0:
        return None
    rank = q * total
    idx = min(bisect_left(monotonic, rank), len(bounds) - 1)
    if math.isinf(bounds[idx]):
        return bounds[idx - 1]
    if idx == 0 and bounds[0] <= 0:
        return bounds[0]
    start = 0.0 if idx == 0 else bounds[idx - 1]
    below = 0.0 if idx == 0 else monotonic[idx - 1]
    in_bucket = monotonic[idx] - below
    if in_bucket <= 0:
        return start
    return start + (bounds[idx] - start) * ((rank - below) / in_bucket)


class PodWindow:
    """The last ``window_s`` seconds of snapshots of one pod (always at least the last two)."""

    def __init__(self, window_s: float = 60.0) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0 seconds, got {window_s!r}")
        self.window_s = window_s
        self._points: deque[_Point] = deque()

    def __len__(self) -> int:
        return len(self._points)

    @property
    def latest(self) -> VllmSnapshot | None:
        """The newest snapshot, or None before the first add()."""
        return self._points[-1].snap if self._points else None

    @property
    def newest_s(self) -> float | None:
        """Time of the newest snapshot, or None before the first add()."""
        return self._points[-1].t_s if self._points else None

    @property
    def span_s(self) -> float:
        """Seconds between the oldest and the newest snapshot kept (0 with fewer than two)."""
        return self._points[-1].t_s - self._points[0].t_s if len(self._points) > 1 else 0.0

    def in_flight_change_per_s(self) -> float | None:
        """Change of waiting + running requests per second over the window (None: < 2 points).

        Arrivals = completions + growth of what is in flight: with the completion rate
        (``rate("request_success")``) this gives the arrival rate vLLM does not export.
        """
        if len(self._points) < 2 or self.span_s <= 0:
            return None
        first, last = self._points[0].snap, self._points[-1].snap
        grown = (last.waiting + last.running) - (first.waiting + first.running)
        return grown / self.span_s

    def add(self, t_s: float, snap: VllmSnapshot) -> None:
        """Append a snapshot taken at monotonic time ``t_s``; drop the ones out of the window.

        A snapshot at the same time as the newest one replaces it (a coarse or frozen clock);
        an earlier time is a caller bug and raises ValueError.
        """
        if self._points and t_s <= self._points[-1].t_s:
            if t_s < self._points[-1].t_s:
                raise ValueError(f"t_s={t_s!r} is before the previous snapshot's "
                                 f"t_s={self._points[-1].t_s!r}: pass monotonic seconds")
            self._points.pop()
        self._points.append(_Point(t_s, snap))
        horizon = t_s - self.window_s
        while len(self._points) > 2 and self._points[0].t_s < horizon:
            self._points.popleft()

    def rate(self, counter: str) -> float | None:
        """Per-second increase of ``counter`` over the window (reset-aware); None if unknown."""
        increase = elapsed = 0.0
        for a, b in pairwise(self._points):
            prev, cur = a.snap.counters.get(counter), b.snap.counters.get(counter)
            if prev is None or cur is None:
                continue
            increase += _counter_increase(prev, cur)
            elapsed += b.t_s - a.t_s
        return increase / elapsed if elapsed > 0 else None

    def increase(self, histogram: str) -> HistogramIncrease | None:
        """Reset-aware increase of every bucket over the window; None with under 2 points."""
        if len(self._points) < 2:
            return None
        latest = self._points[-1].snap.histograms.get(histogram)
        if latest is None:
            return None
        bounds = latest.bounds
        buckets = [0.0] * len(bounds)
        total = count = 0.0
        used = False
        for a, b in pairwise(self._points):
            prev, cur = a.snap.histograms.get(histogram), b.snap.histograms.get(histogram)
            if prev is None or cur is None or cur.bounds != bounds:
                continue
            used = True
            if _is_reset(prev, cur):
                base = HistogramSnapshot(bounds, (0.0,) * len(bounds), 0.0, 0.0)
            else:
                base = prev
            for i, (p, c) in enumerate(zip(base.cumulative, cur.cumulative, strict=True)):
                buckets[i] += c - p
            total += cur.sum - base.sum
            count += cur.count - base.count
        return HistogramIncrease(bounds, tuple(buckets), total, count) if used else None

    def quantile(self, histogram: str, q: float) -> float | None:
        """The q-quantile of the observations made during the window; None if there were none."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be within [0, 1], got {q!r}")
        increase = self.increase(histogram)
        if increase is None:
            return None
        return histogram_quantile(q, increase.bounds, increase.cumulative)

    def mean(self, histogram: str) -> float | None:
        """Mean observation during the window (increase of sum / increase of count)."""
        increase = self.increase(histogram)
        if increase is None or not increase.count > 0 or not math.isfinite(increase.sum):
            return None
        return increase.sum / increase.count


def merged_quantile(windows: Iterable[PodWindow], histogram: str, q: float) -> float | None:
    """The q-quantile over several pods, as ``histogram_quantile(q, sum by (le) (rate(...)))``.

    Bucket increases are summed across pods whose bucket bounds equal the first pod's (a pod on
    other bounds, e.g. mid-upgrade, is left out rather than mixed in wrongly).
    """
    increases = [inc for w in windows if (inc := w.increase(histogram)) is not None]
    if not increases:
        return None
    bounds = increases[0].bounds
    same = [inc.cumulative for inc in increases if inc.bounds == bounds]
    summed = tuple(sum(column) for column in zip(*same, strict=True))
    return histogram_quantile(q, bounds, summed)
