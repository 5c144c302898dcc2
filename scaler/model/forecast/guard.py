"""The naive guard: per horizon, how much of the model's departure from the last value to keep.

On a series it was not tuned on, a smoother can do worse than the naive forecast (the last
value): at 10 to 30 minutes these series are close to random walks, and a seasonal profile or
a smoothed level that does not fit them only adds error. The guard measures that online, per
horizon bucket (the buckets of ``conformal.py``), and shrinks the mean towards naive::

    mean = naive + w * (model - naive),    w = clip(E[e * d] / E[d * d], 0, 1)

with ``d`` the model's departure from the last value and ``e`` naive's error, both of the
forecasts made ``m`` steps before each reading: ``w`` is the least-squares weight of the
departure in explaining naive's error (a forecast combination in the manner of Bates and
Granger, "The combination of forecasts", 1969, constrained to [0, 1]). It is 1 where the
model's departures are right, 0 where they are noise (the forecast is then naive's), and in
between it blends; clipped at 0 it never bets against the model either.

Both moments are exponentially weighted means with a memory of ``MEMORY_S`` (seconds, so that
the memory does not depend on the step), and naive's error is clipped at ``CLIP_SCALES`` times
its own mean absolute value at that horizon, so that one burst does not decide the weight for
days. Until ``MIN_SCORES`` forecasts
of a bucket are scored its weight is ``PRIOR``. Pure and O(buckets) per reading. The upper
bound is not blended (see ``conformal.py``): it keeps the model's centre, which it is
calibrated on.

The constants were set before measuring and checked on the tuning series only (m-small's
request rate): memories of 1, 3 or 7 days and clips of 3, 5 or none move its MAE over naive's
by under 0.01 (BENCHMARKS.md, "Never worse than naive").
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from scaler.model.forecast.smoother import clip

MEMORY_S = 3 * 86400.0
"""Memory of the guard's averages (seconds): long enough for a daily cycle to count."""
MIN_SCORES = 20
"""Below this many scored forecasts in a bucket its weight is ``PRIOR``."""
PRIOR = 1.0
"""Weight of the model before the guard has seen enough (before its first day the mean is the
last value anyway: the first day's level draws the band only, ``smoother.py``)."""
CLIP_SCALES = 5.0
"""Naive's error is clipped at this many times its mean absolute value before it counts."""


class GuardPending:
    """What was forecast at step ``k``: the last value and the model's departures from it
    per bucket."""

    __slots__ = ("departures", "k", "naive")

    def __init__(self, k: int, naive: float, departures: list[float]) -> None:
        self.k, self.naive, self.departures = k, naive, departures


class NaiveGuard:
    """Per horizon bucket, the averages behind the weight and the forecasts waiting for their
    targets (a ring indexed by the step they were made at)."""

    __slots__ = ("abs_e", "buckets", "counts", "dd", "ed", "rate", "ring")

    def __init__(self, buckets: tuple[int, ...], step_s: float) -> None:
        self.buckets = buckets
        self.rate = min(1.0, step_s / MEMORY_S)
        self.ed = [0.0] * len(buckets)
        self.dd = [0.0] * len(buckets)
        self.abs_e = [0.0] * len(buckets)
        self.counts = [0] * len(buckets)
        self.ring: list[GuardPending | None] = [None] * (buckets[-1] + 1)

    def score(self, k: int, x: float) -> None:
        """The reading ``x`` at step ``k`` against the forecasts made for it."""
        ring, n = self.ring, len(self.ring)
        ed, dd, abs_e, counts = self.ed, self.dd, self.abs_e, self.counts
        for j, m in enumerate(self.buckets):
            made = ring[(k - m) % n]
            if made is None or made.k != k - m:
                continue
            e, d = x - made.naive, made.departures[j]
            count = counts[j] = counts[j] + 1
            rate = self.rate if count * self.rate > 1.0 else 1.0 / count  # a plain mean first
            if count > MIN_SCORES:
                limit = CLIP_SCALES * abs_e[j]
                e = limit if e > limit else -limit if e < -limit else e
            abs_e[j] += rate * (abs(e) - abs_e[j])
            ed[j] += rate * (e * d - ed[j])
            dd[j] += rate * (d * d - dd[j])

    def record(self, k: int, naive: float | None, means: Sequence[float] | None) -> None:
        """The model's ``means`` per bucket made at step ``k`` from the last value ``naive``."""
        slot = k % len(self.ring)
        if naive is None or means is None:
            self.ring[slot] = None
            return
        self.ring[slot] = GuardPending(k, naive, [mu - naive for mu in means])

    def weight(self, j: int) -> float:
        if self.counts[j] < MIN_SCORES:
            return PRIOR
        if self.dd[j] <= 0.0:
            return 1.0  # the model never departed from naive: nothing to shrink
        return clip(self.ed[j] / self.dd[j], 0.0, 1.0)

    def weight_at(self, m: float) -> float:
        """Weight at ``m`` steps: linear between buckets, the last bucket's beyond."""
        buckets = self.buckets
        if m >= buckets[-1]:
            return self.weight(len(buckets) - 1)
        j = bisect.bisect_left(buckets, m)
        if buckets[j] == m or j == 0:
            return self.weight(j)
        lo, hi = buckets[j - 1], buckets[j]
        return self.weight(j - 1) + (m - lo) / (hi - lo) * (self.weight(j) - self.weight(j - 1))
