"""Fluid M/M/c model of a vLLM fleet: rate series in, TTFT distribution and replica load out.

The live capacity model (:mod:`scaler.model.capacity`) sizes the fleet with it and the what-if
replay (:mod:`scaler.sim.replay`) plays rate traces through it, so both see the same queueing.
Pure and deterministic: no clock, no I/O, no randomness. Replica start-up, node provisioning
and GPU-hour accounting belong to the caller; the fleet only sees the replicas that are ready
to serve. Per-replica performance comes from a :class:`~scaler.model.profile.ReplicaProfile`.
The request-level counterpart for request traces is :mod:`scaler.sim.request_fleet`.

FluidFleet (rate series)
------------------------
Requests are a fluid. Each replica serves at most ``mu`` requests/s, its saturated rate for
the tick's mean lengths (``ReplicaProfile.saturated_request_rate``: the engine's rate, capped
at the API server's ``max_requests_per_s``); with ``N`` ready
replicas the capacity is ``C = N * mu``. Work not served in a tick is carried as a backlog
(FIFO), and surplus capacity drains it. A request arriving ``u`` seconds into the tick waits
in two parts:

* the backlog ahead of it at the current capacity, ``max(0, backlog + (rate - C) u) / C``
  (so this tick's arrivals see a uniform spread of fluid waits; capacity changes later in
  the run are not foreseen);
* a stationary queueing delay, M/M/c with ``c = N * servers_per_replica`` servers of rate
  ``mu / servers_per_replica``: waits with the Erlang-C probability ``P_w`` and then for an
  exponential time of rate ``C (1 - rho)``, ``rho = rate / C`` capped at 0.98. One server
  per replica (the default) treats a replica as one queue whose service time is its
  per-request share ``1 / mu``: the TTFT tail then grows steadily from moderate load, as
  vLLM latency-load sweeps (benchmark_serving) show; a server per batch slot would keep
  the tail flat until rho ~ 1.

TTFT = wait + prefill time of the mean prompt + one decode step at the current batch size.
Tick percentiles invert the closed-form distribution of the sum (safeguarded Newton), the SLO
fraction is its CDF at the SLO; run-wide ``slo_attainment`` and ``ttft_quantiles`` weight each
tick's distribution by its arrivals. With no ready replica (or lengths that do not fit) every
wait is infinite. Per-replica load (equal split): the decoding batch ``B`` solves Little's law
``B = x * o * t(B) / (1 - x * p / prefill_rate)`` at the served rate ``x`` per replica
(capped at the KV/seq limit), ``running = B +`` requests in prefill, ``kv_cache_usage =
B (p + o/2) / kv_cache_tokens``, ``waiting = (backlog + Erlang-C queue) / N``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import pdtr

from scaler.model.profile import ReplicaProfile

__all__ = [
    "FluidFleet",
    "FluidTick",
    "ReplicaLoad",
    "erlang_c",
]

FloatArray = npt.NDArray[np.float64]

_TIME_EPS = 1e-9     # seconds
RHO_CAP = 0.98       # utilisation cap of the stationary queueing term
_HORIZON_S = 1e12    # "never" for run-wide quantiles


@dataclass(frozen=True)
class ReplicaLoad:
    """What one replica's ``/metrics`` page would show."""

    waiting: float
    running: float
    kv_cache_usage: float





@dataclass(frozen=True)
class FluidTick:
    """One fluid tick: request counts, utilisation, this tick's arrivals' TTFT, replica load."""

    arrivals: float
    served: float
    backlog: float
    utilisation: float
    ttft_p50_s: float
    ttft_p95_s: float
    ttft_p99_s: float
    slo_fraction: float
    load: ReplicaLoad


@dataclass(frozen=True)
class _Wait:
    """Wait distribution: fluid part (prob ``fluid`` uniform on [lo, hi], else 0) plus an
    independent queueing part (prob ``pw`` Exp(``theta``), else 0). ``lo = inf``: no capacity."""

    fluid: float
    lo: float
    hi: float
    pw: float
    theta: float

    def _g(self, y: float) -> float:
        if y < 0:
            return 0.0
        return 1.0 - self.pw * math.exp(-self.theta * y) if self.pw > 0 else 1.0

    def _ig(self, y: float) -> float:
        """Integral of ``_g`` from 0 to ``y``."""
        if y <= 0:
            return 0.0
        if self.pw <= 0:
            return y
        return y - self.pw / self.theta * -math.expm1(-self.theta * y)

    def cdf(self, x: float) -> float:
        if math.isinf(self.lo):
            return 0.0
        queue_only = (1.0 - self.fluid) * self._g(x)
        if self.fluid <= 0:
            return queue_only
        width = self.hi - self.lo
        if width <= _TIME_EPS:
            return queue_only + self.fluid * self._g(x - self.lo)
        return queue_only + self.fluid * (self._ig(x - self.lo) - self._ig(x - self.hi)) / width

    def pdf(self, x: float) -> float:
        if x <= 0 or math.isinf(self.lo):
            return 0.0
        dens = (1.0 - self.fluid) * self.pw * self.theta * math.exp(-self.theta * x)
        width = self.hi - self.lo
        if self.fluid > 0 and width > _TIME_EPS:
            dens += self.fluid * (self._g(x - self.lo) - self._g(x - self.hi)) / width
        elif self.fluid > 0 and x > self.lo:
            dens += self.fluid * self.pw * self.theta * math.exp(-self.theta * (x - self.lo))
        return dens

    def _queue_quantile(self, q: float) -> float:
        if q <= 1.0 - self.pw:
            return 0.0
        return math.log(self.pw / (1.0 - q)) / self.theta

    def _fluid_quantile(self, q: float) -> float:
        if q <= 1.0 - self.fluid:
            return 0.0
        return self.lo + (q - (1.0 - self.fluid)) / self.fluid * (self.hi - self.lo)

    def quantile(self, q: float) -> float:
        if math.isinf(self.lo):
            return math.inf
        if self.fluid <= 0:
            return self._queue_quantile(q)
        if self.pw <= 0:
            return self._fluid_quantile(q)
        if self.cdf(0.0) >= q:
            return 0.0
        tail = 1.0 - (1.0 - q) / 2.0  # Q(X+Y, q) <= Q(X, tail) + Q(Y, tail)
        return self._solve(q, 0.0, self._fluid_quantile(tail) + self._queue_quantile(tail))

    def _solve(self, q: float, low: float, high: float) -> float:
        """Safeguarded Newton on the CDF within the bracket [low, high] (CDF(high) >= q).

        The CDF jumps where the distribution has an atom, so when the bracket closes without
        a root the answer is its upper end, the smallest point known to reach ``q``.
        """
        x = (self._fluid_quantile(q) + self._queue_quantile(q) + high) / 2.0
        for _ in range(100):
            err = self.cdf(x) - q
            if abs(err) < 1e-10:
                return x
            if high - low < 1e-9 * (1.0 + high):
                return high
            if err > 0:
                high = x
            else:
                low = x
            dens = self.pdf(x)
            nxt = x - err / dens if dens > 0 else low - 1.0
            x = nxt if low < nxt < high else (low + high) / 2.0
        return high


def erlang_c(servers: int, offered: float) -> float:
    """Probability of waiting in M/M/c with ``servers`` servers and ``offered`` Erlangs."""
    if offered <= 0:
        return 0.0
    if offered >= servers:
        return 1.0
    if servers <= 32:
        blocking = 1.0
        for k in range(1, servers + 1):
            blocking = offered * blocking / (k + offered * blocking)
    else:
        log_pmf = servers * math.log(offered) - offered - math.lgamma(servers + 1)
        blocking = math.exp(log_pmf) / float(pdtr(servers, offered))
    rho = offered / servers
    return blocking / (1.0 - rho * (1.0 - blocking))


class FluidFleet:
    """Per-tick fluid model of a fleet (model and assumptions in the module docstring)."""

    def __init__(self, profile: ReplicaProfile, *, tick_s: float = 10.0,
                 slo_ttft_s: float = 2.0, servers_per_replica: int = 1) -> None:
        if not (math.isfinite(tick_s) and tick_s > 0):
            raise ValueError(f"tick_s must be > 0, got {tick_s!r}")
        if not (math.isfinite(slo_ttft_s) and slo_ttft_s > 0):
            raise ValueError(f"slo_ttft_s must be > 0, got {slo_ttft_s!r}")
        if servers_per_replica < 1:
            raise ValueError(f"servers_per_replica must be >= 1, got {servers_per_replica!r}")
        self.profile = profile
        self.tick_s = float(tick_s)
        self.slo_ttft_s = float(slo_ttft_s)
        self.servers_per_replica = int(servers_per_replica)
        self.backlog = 0.0
        self.arrived_total = 0.0
        self.served_total = 0.0
        self._slo_met = 0.0
        self._lengths: tuple[float, float] = (math.nan, math.nan)
        self._mu = 0.0
        self._history: list[tuple[float, float, float, float, float, float, float]] = []

    def _rate_per_replica(self, mean_prompt: float, mean_output: float) -> float:
        if (mean_prompt, mean_output) != self._lengths:
            self._mu = self.profile.saturated_request_rate(mean_prompt, mean_output)
            self._lengths = (mean_prompt, mean_output)
        return self._mu

    def step(self, *, rate: float, mean_prompt: float, mean_output: float,
             ready_replicas: int) -> FluidTick:
        """Advance one tick at ``rate`` requests/s with ``ready_replicas`` serving."""
        if not (math.isfinite(rate) and rate >= 0):
            raise ValueError(f"rate must be a finite number >= 0, got {rate!r}")
        if ready_replicas < 0:
            raise ValueError(f"ready_replicas must be >= 0, got {ready_replicas!r}")
        mu = self._rate_per_replica(mean_prompt, mean_output)
        capacity = ready_replicas * mu
        tick = self.tick_s
        arrivals = rate * tick
        backlog0 = self.backlog
        served = min(backlog0 + arrivals, capacity * tick)
        self.backlog = max(0.0, backlog0 + arrivals - served)
        self.arrived_total += arrivals
        self.served_total += served
        per_replica = served / tick / ready_replicas if ready_replicas else 0.0
        batch, step_s = self._batch(per_replica, mean_prompt, mean_output)
        base = self.profile.prefill_s(mean_prompt) + step_s
        wait = self._wait(rate, capacity, backlog0, ready_replicas)
        slo = min(1.0, wait.cdf(self.slo_ttft_s - base)) if self.slo_ttft_s >= base else 0.0
        self._slo_met += arrivals * slo
        self._history.append((arrivals, base, wait.fluid, wait.lo, wait.hi, wait.pw, wait.theta))
        return FluidTick(
            arrivals=arrivals,
            served=served,
            backlog=self.backlog,
            utilisation=min(1.0, served / (capacity * tick)) if capacity > 0 else 0.0,
            ttft_p50_s=base + wait.quantile(0.50),
            ttft_p95_s=base + wait.quantile(0.95),
            ttft_p99_s=base + wait.quantile(0.99),
            slo_fraction=slo,
            load=self._load(ready_replicas, batch, per_replica, mean_prompt, mean_output,
                            wait, rate, capacity),
        )

    def _batch(self, per_replica: float, p: float, o: float) -> tuple[float, float]:
        """Decoding batch at ``per_replica`` req/s (Little's law) and its decode step time."""
        prof = self.profile
        a0 = prof.decode_step_base_s
        a1 = prof.step_per_seq_s + prof.decode_step_per_cached_token_s * (p + o / 2.0)
        b_max = prof.max_batch(p, o)
        denom = 1.0 - per_replica * prof.prefill_s(p) - per_replica * o * a1
        batch = b_max if denom <= 0 else min(b_max, per_replica * o * a0 / denom)
        return batch, a0 + a1 * batch

    def _wait(self, rate: float, capacity: float, backlog0: float, replicas: int) -> _Wait:
        if capacity <= 0:
            return _Wait(1.0, math.inf, math.inf, 1.0, 0.0)
        rho = min(rate / capacity, RHO_CAP)
        servers = replicas * self.servers_per_replica
        pw = erlang_c(servers, rho * servers)
        theta = capacity * (1.0 - rho)
        w0 = backlog0 / capacity
        w_end = w0 + (rate - capacity) / capacity * self.tick_s
        if w0 <= 0 and w_end <= 0:
            return _Wait(0.0, 0.0, 0.0, pw, theta)
        if w_end >= 0:
            return _Wait(1.0, min(w0, w_end), max(w0, w_end), pw, theta)
        drained = w0 / (w0 - w_end)  # share of the tick before the backlog is gone
        return _Wait(drained, 0.0, w0, pw, theta)

    def _load(self, replicas: int, batch: float, per_replica: float, p: float, o: float,
              wait: _Wait, rate: float, capacity: float) -> ReplicaLoad:
        if not replicas:
            return ReplicaLoad(self.backlog, 0.0, 0.0)
        rho = min(rate / capacity, RHO_CAP) if capacity > 0 else 0.0
        queue = wait.pw * rho / (1.0 - rho)
        prefilling = per_replica * self.profile.prefill_s(p)
        running = min(float(self.profile.max_num_seqs), batch + prefilling)
        usage = min(1.0, batch * (p + o / 2.0) / self.profile.kv_cache_tokens)
        return ReplicaLoad((self.backlog + queue) / replicas, running, usage)

    # ----------------------------------------------------------------- run totals

    @property
    def slo_attainment(self) -> float:
        """Share of all arrivals so far with TTFT <= the SLO (1.0 before any arrival)."""
        return self._slo_met / self.arrived_total if self.arrived_total > 0 else 1.0

    def ttft_quantiles(self, qs: Sequence[float]) -> FloatArray:
        """Run-wide TTFT quantiles: each tick's distribution weighted by its arrivals.

        ``inf`` where the quantile falls among requests that met no capacity; NaN before any
        arrival.
        """
        rows = np.asarray(self._history, dtype=np.float64).reshape(-1, 7)
        rows = rows[rows[:, 0] > 0]
        if not rows.size:
            return np.full(len(qs), math.nan)
        weight = rows[:, 0] / rows[:, 0].sum()
        return np.asarray([_mixture_quantile(q, weight, rows) for q in qs])


def _mixture_cdf(x: float, weight: FloatArray, rows: FloatArray) -> float:
    """Arrival-weighted CDF of TTFT over ticks (vectorised ``_Wait.cdf`` shifted by base)."""
    base, fluid, lo, hi, pw, theta = (rows[:, i] for i in range(1, 7))
    finite = np.isfinite(lo)
    y = x - base
    lo = np.where(finite, lo, 0.0)
    hi = np.where(finite, hi, 0.0)
    safe_theta = np.where(theta > 0, theta, 1.0)

    def g(v: FloatArray) -> FloatArray:
        out: FloatArray = np.where(v < 0, 0.0, 1.0 - pw * np.exp(-safe_theta * np.maximum(v, 0.0)))
        return out

    def ig(v: FloatArray) -> FloatArray:
        vp = np.maximum(v, 0.0)
        out: FloatArray = vp - pw / safe_theta * -np.expm1(-safe_theta * vp)
        return out

    width = hi - lo
    wide = width > _TIME_EPS
    spread = np.where(wide, (ig(y - lo) - ig(y - hi)) / np.where(wide, width, 1.0), g(y - lo))
    cdf = (1.0 - fluid) * g(y) + fluid * spread
    return float(np.sum(weight * np.where(finite, cdf, 0.0)))


def _mixture_quantile(q: float, weight: FloatArray, rows: FloatArray) -> float:
    if _mixture_cdf(_HORIZON_S, weight, rows) < q - 1e-12:
        return math.inf
    low, high = 0.0, 1.0
    while _mixture_cdf(high, weight, rows) < q:
        high *= 2.0
    for _ in range(60):
        mid = (low + high) / 2.0
        if _mixture_cdf(mid, weight, rows) < q:
            low = mid
        else:
            high = mid
        if high - low < 1e-6 * (1.0 + high):
            break
    return high
