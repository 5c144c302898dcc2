"""The upper bound: a one-sided conformal quantile of the model's own recent errors.

The forecaster asks it for ``q`` at a horizon and draws the bound as ``centre + scale * q``,
the centre (the model's mean plus burst) and the scale from the smoother (``smoother.py``).
The naive guard (``guard.py``) moves the mean only: the centres scored here are exactly those
the bound is drawn from, so it stays calibrated. (Centres blended towards the last value, which
already holds the burst, were measured worse: pinball on m-mid 0.80 of the best baseline's at
10 minutes against 0.72, with no series better; see BENCHMARKS.md, "Never worse than naive".)

The configured quantile of demand at each horizon, from the model's own recent errors, one
sided (under-forecast is what breaks the SLO). At 10 minutes these series are close to random
walks, so the gain over a constant-width band comes from modelling the error:

* Scale: ``sqrt(slow * fast)``, the geometric mean of two exponentially weighted means of the
  absolute one-step error (``SLOW_RATE``: ~50 steps, 8 h at 10 minutes; ``FAST_RATE``: ~3
  steps): the slow one holds the regime and the diurnal amplitude, the fast one catches a
  burst regime within a step or two (either alone was worse in pinball loss; see
  BENCHMARKS.md, section "Forecaster design choices"). Both are kept by the smoother.
* Burst persistence: the part of the last reading above the smoothed fit (what the robust
  level refused to follow) is added to the centre of the band: a burst that has started
  tends to last another step or two.
* Calibration: per horizon bucket (1, 2, 3, 4, 6, 8, 12, ... steps, up to ``max_horizon_s``)
  the errors of the centres made ``m`` steps before, divided by the scale at that time, are
  kept over the last ``ERROR_WINDOW`` steps; the bound is ``centre + scale * q``, ``q`` their
  empirical quantile at the conformal rank ``ceil((n + 1) * quantile)``: split conformal
  prediction on a sliding window, which tracks distribution shift (Gibbs and Candes, "Adaptive
  conformal inference under distribution shift", NeurIPS 2021; Angelopoulos, Candes and
  Tibshirani, "Conformal PID control for time series prediction", NeurIPS 2023). Horizons
  between buckets interpolate; beyond the last bucket ``q`` grows with the square root of
  the horizon.
* Prior: with few errors that rank is the sample's largest, one outlier wide, so ``q`` is
  pooled with the Gaussian quantile (``prior_z``) as if the prior were ``PRIOR_ERRORS`` errors
  already seen: ``(PRIOR_ERRORS * prior + n * empirical) / (PRIOR_ERRORS + n)``. The band
  moves from the prior towards the evidence as errors arrive, rather than jumping at a
  threshold.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from statistics import NormalDist

from scaler.model.forecast.smoother import clip

ERROR_WINDOW = 1008
"""Errors kept per horizon bucket (a week at 10-minute steps)."""
PRIOR_ERRORS = 100
"""How many errors the Gaussian prior is worth when pooled with a bucket's empirical quantile.

Chosen on the tuning series (m-small requests, walk-forward as in
``benchmarks/forecast_accuracy.py``): the upper bound's pinball loss over the first days at
10/20/30 minutes, against the best baseline's, was 0.983/0.935/0.969 with the former rule
(Gaussian until 20 errors, then the empirical quantile alone), 0.926/0.898/0.923 at 40,
0.921/0.895/0.914 at 80, 0.921/0.895/0.911 at 100, 0.922/0.897/0.907 at 160 and
0.927/0.905/0.905 at 320: flat from 80 to 320; 100 is a round value inside that range. On
the 14-day series it moves the bound by under 0.5 %. See BENCHMARKS.md, "Pooling the prior
with the conformal quantile".
"""
Z_LIMIT = 1e6
"""Normalised errors are clipped to +-this before they are kept."""


def prior_z(quantile: float) -> float:
    """Scale units per sqrt(step) of the band before a bucket has errors: the Gaussian
    quantile in mean-absolute-error units (the scale is a mean absolute error, and a
    Gaussian's is sigma * sqrt(2 / pi)): 2.06 at 0.95. The fixed 3 used before, whatever the
    quantile, scored 0.4-1.6 % worse in pinball loss on m-small's first days, the tuning series
    (BENCHMARKS.md, "A new workload's first day")."""
    return NormalDist().inv_cdf(quantile) * math.sqrt(math.pi / 2.0)


def bucket_steps(max_steps: int) -> tuple[int, ...]:
    """1, 2, 3, 4, 6, 8, 12, 16, 24, ... up to ``max_steps`` (which is always included)."""
    out = [1, 2, 3]
    while out[-1] < max_steps:
        out.append(out[-2] * 2)
    kept = [m for m in out if m < max_steps]
    return (*kept, max_steps)


class ErrorWindow:
    """The last ``ERROR_WINDOW`` normalised errors of one horizon bucket, kept sorted."""

    __slots__ = ("order", "sorted")

    def __init__(self) -> None:
        self.order: deque[float] = deque()
        self.sorted: list[float] = []

    def add(self, z: float) -> None:
        if len(self.order) >= ERROR_WINDOW:
            old = self.order.popleft()
            del self.sorted[bisect.bisect_left(self.sorted, old)]
        self.order.append(z)
        bisect.insort(self.sorted, z)

    def __len__(self) -> int:
        return len(self.sorted)

    def quantile(self, q: float) -> float | None:
        """Conformal quantile: the ceil((n + 1) q)-th smallest error (None if none yet)."""
        n = len(self.sorted)
        if n == 0:
            return None
        rank = min(n, math.ceil((n + 1) * q))
        return self.sorted[rank - 1]


class PendingCentres:
    """Centres of the band made at step ``k`` (one per horizon bucket) and the error scale
    then, kept until their targets are observed and scored."""

    __slots__ = ("centres", "k", "scale")

    def __init__(self, k: int, centres: list[float], scale: float) -> None:
        self.k, self.centres, self.scale = k, centres, scale


class ConformalBound:
    """Per horizon bucket, the window of recent normalised errors and the centres waiting for
    their targets (a ring indexed by the step they were made at)."""

    __slots__ = ("buckets", "prior", "quantile", "ring", "windows")

    def __init__(self, buckets: tuple[int, ...], quantile: float) -> None:
        self.buckets = buckets
        self.quantile = quantile
        self.prior = prior_z(quantile)
        self.windows = [ErrorWindow() for _ in buckets]
        self.ring: list[PendingCentres | None] = [None] * (buckets[-1] + 1)

    def score(self, k: int, x: float) -> None:
        """The reading ``x`` at step ``k`` against the centres made for it, bucket by bucket."""
        ring, n = self.ring, len(self.ring)
        for j, m in enumerate(self.buckets):
            made = ring[(k - m) % n]
            if made is not None and made.k == k - m:
                z = (x - made.centres[j]) / made.scale
                self.windows[j].add(clip(z, -Z_LIMIT, Z_LIMIT))

    def record(self, k: int, centres: list[float] | None, scale: float) -> None:
        """The band centres made at step ``k`` (one per bucket; None: no forecast yet) and the
        error scale then, to be scored later."""
        slot = k % len(self.ring)
        self.ring[slot] = None if centres is None else PendingCentres(k, centres, scale)

    def z_at(self, m: float) -> float:
        """Error quantile (scale units) at ``m`` steps: bucket interpolation, sqrt beyond."""
        buckets = self.buckets
        if m >= buckets[-1]:
            return self._bucket_z(len(buckets) - 1) * math.sqrt(m / buckets[-1])
        j = bisect.bisect_left(buckets, m)
        if buckets[j] == m or j == 0:
            return self._bucket_z(j)
        lo, hi = buckets[j - 1], buckets[j]
        z_lo, z_hi = self._bucket_z(j - 1), self._bucket_z(j)
        return z_lo + (m - lo) / (hi - lo) * (z_hi - z_lo)

    def _bucket_z(self, j: int) -> float:
        """The bucket's empirical quantile pooled with the Gaussian prior (see the module)."""
        prior = self.prior * math.sqrt(self.buckets[j])
        window = self.windows[j]
        empirical = window.quantile(self.quantile)
        if empirical is None:
            return prior
        n = len(window)
        return (PRIOR_ERRORS * prior + n * empirical) / (PRIOR_ERRORS + n)
