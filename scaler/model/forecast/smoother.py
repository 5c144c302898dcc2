"""The mean of the forecast: level, damped trend and seasons, updated in O(1) per reading.

The smoother also keeps the error scales the upper bound is drawn with (``conformal.py``). The
forecaster runs one live; the refit (``fit.py``) replays copies with trial parameters.

Exponential smoothing of the Holt-Winters family in error-correction form (Hyndman et al.,
*Forecasting with Exponential Smoothing*, 2008, ETS(A,Ad,A); two seasons as in Taylor,
"Short-term electricity demand forecasting using double seasonal exponential smoothing",
JORS 2003). With ``e`` the one-step innovation and ``psi(e)`` its robust version (below)::

    forecast(k + m) = level + trend * (phi + ... + phi^m) + day[k + m] + week[k + m]
    level  <- level + phi * trend + alpha * psi(e)
    trend  <- phi * trend + alpha * beta * psi(e)
    season <- season + gamma_s * psi(e), spread over neighbouring phases (below)

Every update is O(1). What had to change from the textbook, and why (measured on the
ServeGen traces with ``benchmarks/forecast_accuracy.py`` and its predecessors; for the
figures see BENCHMARKS.md, section "Forecaster design choices"):

* Robust innovations (Gelper, Fried and Croux, "Robust forecasting with exponential and
  Holt-Winters smoothing", J. Forecasting 2010): ``psi`` clips the innovation at ``HUBER_K``
  times the slow error scale (Huber), so one burst moves the level by at most
  ``alpha * HUBER_K`` scale units. A level shift is told from a burst by persistence:
  ``SHIFT_RUN`` outliers in a row on the same side and the level jumps to the data (trend
  reset), so a real step change is followed within two steps.
* Smooth seasonal indices: at 10-minute resolution one day's profile is mostly noise, and a
  forecast uses the difference ``day[k + m] - day[k]``, which noisy indices turn into pure
  error (raw indices made the MAE clearly worse than the best baseline's). Each update is
  spread over +-``KERNEL_S`` seconds of phase with triangular weights summing to one, and the
  first day's profile (the initial indices) is smoothed the same way.
* The daily indices start from the first full day (its mean removed). Until then the
  forecast's mean is the last value (``forecaster.py``), and a robust level, smoothed at
  ``FIRST_DAY_ALPHA`` with the same clip and shift rule, draws the band: its centre is the
  level where the last value fell below it (one low reading is not trusted to last) and its
  scale is the level's errors. With the last value as the band's centre and its one-step
  changes as the scale, the bound's pinball loss over a new workload's first day was 1.08 /
  1.21 / 1.32 times the best baseline's at 10 / 20 / 30 minutes (m-small cut into 14 first
  days, the tuning series), 0.98 / 0.93 / 0.97 with the level (BENCHMARKS.md, "A new
  workload's first day"). The weekly indices start once a week has been seen, from that
  week's readings gathered per phase (a sum and a count) less the daily indices, its mean
  removed: so a 14-day series' second week already uses the first week's same phase (started
  from zeros instead, as they were, they learnt too slowly to matter within two weeks). From
  then on each phase's index is an exponentially weighted aggregate of every week seen, in
  one array of 8-byte floats: at 5-minute steps 2,016 phases, 16 KiB per workload, however
  many weeks (``benchmarks/forecast_accuracy.py`` prints what a whole forecaster holds).
* A log (multiplicative) variant was measured and rejected: worse on m-mid at every horizon
  (its outage to a few requests/s wrecks a log level) and mixed on m-small.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from scaler.model.forecast.daily_shape import daily_shape

HUBER_K = 3.0
"""Innovations are clipped at this many error-scale units before they update the state."""
FIRST_DAY_ALPHA = 0.2
"""Weight of the newest reading in the robust level before the first season starts (which
draws the band only; the mean is then the last value). Chosen among 0.1, 0.2, 0.3 and 0.5 on
m-small's first days, the tuning series: 0.1 was best at 20-30 minutes but worse than the
best baseline at 10, 0.3 and 0.5 worse at every horizon."""
SHIFT_RUN = 2
"""Outliers in a row on the same side that make a level shift (the level jumps to the data)."""
SLOW_RATE = 0.02
"""Weight of the newest absolute error in the slow error scale (memory ~50 steps)."""
FAST_RATE = 0.3
"""Weight of the newest absolute error in the fast error scale (memory ~3 steps)."""
KERNEL_S = 6000.0
"""Half-width (seconds of phase) of the triangular kernel spreading seasonal updates."""
MAX_KERNEL_TAPS = 10
"""At most this many phases each side get a share of a seasonal update (cost bound)."""
SCALE_FLOOR = 1e-9
"""Smallest error scale (plus 1e-6 of the level): keeps normalised errors finite."""


@dataclass(frozen=True)
class SmoothingParams:
    """Smoothing parameters; ``gammas`` has one entry per season (daily, weekly, ...)."""

    alpha: float = 0.7
    beta: float = 0.0
    phi: float = 0.9
    gammas: tuple[float, ...] = (0.05, 0.05)

    def as_vector(self) -> list[float]:
        return [self.alpha, self.beta, self.phi, *self.gammas]

    @classmethod
    def from_vector(cls, v: Sequence[float]) -> SmoothingParams:
        return cls(float(v[0]), float(v[1]), float(v[2]), tuple(float(g) for g in v[3:]))


def clip(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def damped_sum(phi: float, m: int) -> float:
    """phi + phi^2 + ... + phi^m."""
    return phi * (1.0 - phi**m) / (1.0 - phi) if phi != 1.0 else float(m)


class Season:
    """Additive seasonal indices per step of the period, learnt through a smoothing kernel.

    The indices are a compact array (8 bytes a phase: 2,016 phases for a week of 5-minute
    steps, 16 KiB). A later season (weekly) that is not learning yet also gathers, per phase,
    the sum and count of the readings of its first period (``gathered``: two more such arrays,
    dropped once it starts): what ``start_from_gathered`` makes its first profile of.
    """

    __slots__ = ("gathered", "kernel", "learning", "period", "values")

    def __init__(self, period: int, kernel: tuple[tuple[int, float], ...]) -> None:
        self.period = period
        self.kernel = kernel
        self.values = array("d", bytes(8 * period))
        self.learning = False
        self.gathered: tuple[array[float], array[float]] | None = None

    def learn(self, k: int, amount: float) -> None:
        values, period = self.values, self.period
        for offset, weight in self.kernel:
            values[(k + offset) % period] += amount * weight

    def copy(self) -> Season:
        twin = Season(self.period, self.kernel)
        twin.values, twin.learning = array("d", self.values), self.learning
        if self.gathered is not None:
            twin.gathered = (array("d", self.gathered[0]), array("d", self.gathered[1]))
        return twin

    def set_profile(self, profile: Sequence[float]) -> None:
        """Start from a raw profile (one value per phase), smoothed by the kernel."""
        n = self.period
        self.values = array("d", (sum(w * profile[(i + j) % n] for j, w in self.kernel)
                                  for i in range(n)))
        self.learning = True
        self.gathered = None

    def gather(self, k: int, x: float) -> None:
        """One reading of the first period, kept as a per-phase sum and count."""
        if self.gathered is None:
            self.gathered = (array("d", bytes(8 * self.period)),
                             array("d", bytes(8 * self.period)))
        sums, counts = self.gathered
        sums[k % self.period] += x
        counts[k % self.period] += 1.0

    def start_from_gathered(self, others: Sequence[float]) -> bool:
        """Start learning from the gathered means less ``others`` (the other seasons' indices
        per phase), centred; False (and nothing changes) while under half the phases have a
        reading."""
        if self.gathered is None:
            return False
        sums, counts = self.gathered
        seen = sum(1 for c in counts if c > 0.0)
        if 2 * seen < self.period:
            return False
        raw = [s / c - others[i] if c > 0.0 else None
               for i, (s, c) in enumerate(zip(sums, counts, strict=True))]
        centre = sum(v for v in raw if v is not None) / seen
        self.set_profile(_fill_gaps([None if v is None else v - centre for v in raw]))
        return True


class Smoother:
    """Level, damped trend, seasons and error scales: the O(1) recursive core.

    Used live by the forecaster and, with trial parameters, replayed by the refit.
    """

    __slots__ = ("first", "first_k", "last_resid", "level", "params", "ready", "run",
                 "scale_errors", "scale_fast", "scale_slow", "seasons", "trend")

    def __init__(self, periods: Sequence[int], kernels: Sequence[tuple[tuple[int, float], ...]],
                 params: SmoothingParams) -> None:
        self.params = params
        self.seasons = [Season(p, kern) for p, kern in zip(periods, kernels, strict=True)]
        self.level: float | None = None
        self.trend = 0.0
        self.ready = not self.seasons  # seasons initialised (or none to initialise)
        self.first: list[tuple[int, float]] = []  # readings of the first period
        self.first_k: int | None = None
        self.scale_slow = 0.0
        self.scale_fast = 0.0
        self.scale_errors = 0
        self.run = 0  # signed count of consecutive outliers
        self.last_resid = 0.0  # observation minus smoothed fit after the last update

    def copy(self, params: SmoothingParams) -> Smoother:
        """An independent copy running with ``params``."""
        twin = Smoother((), (), params)
        twin.seasons = [s.copy() for s in self.seasons]
        twin.level, twin.trend, twin.ready = self.level, self.trend, self.ready
        twin.first, twin.first_k = list(self.first), self.first_k
        twin.scale_slow, twin.scale_fast = self.scale_slow, self.scale_fast
        twin.scale_errors = self.scale_errors
        twin.run, twin.last_resid = self.run, self.last_resid
        return twin

    # -- forecasts ------------------------------------------------------------------------

    def seasonal(self, k: int) -> float:
        s = 0.0
        for season in self.seasons:
            s += season.values[k % season.period]
        return s

    def predict(self, k: int, m: int) -> float:
        """Mean for step ``k + m`` made at step ``k`` (after its update)."""
        level = self.level if self.level is not None else 0.0
        if not self.ready:
            return level
        return level + self.trend * damped_sum(self.params.phi, m) + self.seasonal(k + m)

    def mean_at(self, k: int, m: float) -> float:
        """Mean ``m`` steps after step ``k``; between whole steps, linear."""
        lo = int(m)
        mean_lo = self.predict(k, lo)
        if m == lo:
            return mean_lo
        mean_hi = self.predict(k, lo + 1)
        return mean_lo + (m - lo) * (mean_hi - mean_lo)

    def scale(self) -> float:
        """Error scale of the upper bound: geometric mean of the slow and fast scales."""
        floor = SCALE_FLOOR + 1e-6 * abs(self.level or 0.0)
        return max(math.sqrt(self.scale_slow) * math.sqrt(self.scale_fast), floor)

    # -- updates --------------------------------------------------------------------------

    def skip(self) -> None:
        """A missing step: the level follows its damped trend, nothing is learnt."""
        if self.level is not None and self.ready:
            self.level += self.params.phi * self.trend
            self.trend *= self.params.phi
        self.last_resid = 0.0

    def skip_many(self, n: int) -> None:
        """A long gap at once: the damped trend over ``n`` steps in O(1), nothing learnt."""
        if self.level is not None and self.ready:
            self.level += self.trend * damped_sum(self.params.phi, n)
            self.trend *= self.params.phi**n
        self.last_resid = 0.0

    def update(self, k: int, x: float) -> None:
        for season in self.seasons[1:]:
            if not season.learning:
                season.gather(k, x)
        if self.level is None:
            self.level, self.first_k = x, k
            self.first.append((k, x))
            return
        if not self.ready:
            self._update_first_day(k, x)
            return
        p = self.params
        seasonal = self.seasonal(k)
        e = x - (self.level + p.phi * self.trend + seasonal)
        limit = self._outlier_limit(x)
        if self._is_shift(e, limit):
            self.level, self.trend, self.run = x - seasonal, 0.0, 0
        else:
            psi = clip(e, -limit, limit)
            self.level += p.phi * self.trend + p.alpha * psi
            self.trend = p.phi * self.trend + p.alpha * p.beta * psi
            for season, gamma in zip(self.seasons, p.gammas, strict=True):
                if season.learning and gamma > 0.0:
                    season.learn(k, gamma * psi)
        self._update_scales(e)
        self.last_resid = x - self.level - seasonal
        self._start_learning(k)

    def reshape_first_season(self, readings: Sequence[tuple[int, float]], step_s: float,
                             k: int) -> bool:
        """Replace the first season's indices by the shape the kept ``readings`` show, when
        they show a better one (``daily_shape.py``); True if it changed. The level moves so
        that the fitted value at step ``k`` stays where it was."""
        if not self.ready or not self.seasons or self.level is None:
            return False
        first, later = self.seasons[0], [s for s in self.seasons[1:] if s.learning]
        net = [(j, x - sum(s.values[j % s.period] for s in later)) for j, x in readings]
        shape = daily_shape(net, first.period, step_s, first.values)
        if shape is None:
            return False
        phase = k % first.period
        self.level += first.values[phase] - float(shape[phase])
        first.values = array("d", shape.tolist())
        return True

    def _outlier_limit(self, x: float) -> float:
        return HUBER_K * max(self.scale_slow, SCALE_FLOOR + 1e-6 * abs(x))

    def _is_shift(self, e: float, limit: float) -> bool:
        if e > limit:
            self.run = self.run + 1 if self.run > 0 else 1
        elif e < -limit:
            self.run = self.run - 1 if self.run < 0 else -1
        else:
            self.run = 0
        return abs(self.run) >= SHIFT_RUN

    def _update_scales(self, e: float) -> None:
        """Exponentially weighted means of the absolute error, each a plain mean of the errors
        so far until it has seen ``1 / rate`` of them: started from the first error alone, the
        slow scale kept a new workload's first jump for ~50 steps (on the Azure hour a band
        four times its readings for the first 20 minutes)."""
        a = abs(e)
        self.scale_errors += 1
        n = self.scale_errors
        self.scale_slow += max(SLOW_RATE, 1.0 / n) * (a - self.scale_slow)
        self.scale_fast += max(FAST_RATE, 1.0 / n) * (a - self.scale_fast)

    def _update_first_day(self, k: int, x: float) -> None:
        """Before the first period is complete: a robust level without trend or season (it
        draws the band; the forecaster's mean is the last value)."""
        assert self.level is not None and self.first_k is not None
        e = x - self.level
        limit = self._outlier_limit(x)
        if self._is_shift(e, limit):
            self.level, self.run = x, 0
        else:
            self.level += FIRST_DAY_ALPHA * clip(e, -limit, limit)
        self._update_scales(e)
        self.last_resid = x - self.level
        self.first.append((k, x))
        period = self.seasons[0].period
        if k - self.first_k >= period - 1 and 2 * len(self.first) >= period:
            self._init_first_season()

    def _init_first_season(self) -> None:
        season = self.seasons[0]
        n = season.period
        mean = sum(x for _, x in self.first) / len(self.first)
        sums, counts = [0.0] * n, [0] * n
        for k, x in self.first:
            sums[k % n] += x - mean
            counts[k % n] += 1
        means = [s / c if c else None for s, c in zip(sums, counts, strict=True)]
        season.set_profile(_fill_gaps(means))
        last_k, last_x = self.first[-1]
        self.level = last_x - self.seasonal(last_k)
        self.last_resid = 0.0
        self.first = []
        self.ready = True

    def _start_learning(self, k: int) -> None:
        """A later season (weekly) starts once its whole period has been seen: from the
        readings it gathered, less the first season's indices (so a 14-day series' second
        week already uses the first week's same phase), the level lowered by its index now
        so that the one-step forecast does not jump; from zeros if too little was gathered."""
        if self.first_k is None or not self.ready:
            return
        for season in self.seasons[1:]:
            if season.learning or k - self.first_k < season.period - 1:
                continue
            daily = self.seasons[0]
            others = [daily.values[i % daily.period] for i in range(season.period)]
            if season.start_from_gathered(others):
                assert self.level is not None
                self.level -= season.values[k % season.period]
            elif k - self.first_k >= season.period:
                season.learning, season.gathered = True, None


def _fill_gaps(profile: Sequence[float | None]) -> list[float]:
    """Missing phases take the nearest observed phase (circularly)."""
    n = len(profile)
    out: list[float] = []
    for i in range(n):
        for j in range(n):
            v = profile[(i - j) % n]
            if v is None:
                v = profile[(i + j) % n]
            if v is not None:
                out.append(v)
                break
        else:
            out.append(0.0)
    return out
