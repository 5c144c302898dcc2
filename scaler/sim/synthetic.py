"""Synthetic workloads: a seeded rate trace, and requests drawn from any rate trace.

They let the replay, the demo and the tests run without a real trace. The rate trace is sized
for a ~10-replica fleet of the default 8B profile (peak ~400 req/s, ShareGPT-like lengths ~600
prompt / ~200 output tokens) and has what real traces show: a diurnal cycle, a weekly
modulation (weekends at 60%) when the trace spans a week, short bursts, a level shift and one
idle hour with a rate of exactly 0. ``synthetic_requests`` draws Poisson arrivals (uniform
within each window, counts Poisson(rate x step)) and lognormal lengths with the window's means.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from scaler.sim.traces import RateTrace, RequestTrace

__all__ = ["synthetic_requests", "synthetic_workload"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Synthetic request lengths: log-space spread and context limits.
_PROMPT_SIGMA = 1.0
_OUTPUT_SIGMA = 0.8
_MAX_PROMPT = 16384
_MAX_OUTPUT = 4096
_MAX_SYNTHETIC_REQUESTS = 20_000_000


def synthetic_workload(seed: int = 0, days: float = 2, step_s: float = 60.0) -> RateTrace:
    """A seeded rate trace for a ~10-replica 8B fleet (features in the module docstring)."""
    if not (math.isfinite(days) and days > 0):
        raise ValueError(f"days must be > 0, got {days!r}")
    if not (math.isfinite(step_s) and step_s > 0):
        raise ValueError(f"step_s must be > 0, got {step_s!r}")
    n = max(1, round(days * 86400.0 / step_s))
    rng = np.random.default_rng(seed)
    start = np.arange(n, dtype=np.float64) * step_s
    mid = start + step_s / 2.0
    day_frac = mid / 86400.0
    # Diurnal: trough ~04:00, peak ~16:00; 0.3 .. 1.0 of the daily peak.
    diurnal = 0.65 - 0.35 * np.cos(2.0 * np.pi * (day_frac - 4.0 / 24.0))
    level = np.full(n, 240.0)
    if days >= 7:
        weekday = np.floor(day_frac).astype(np.int64) % 7
        level = np.where(weekday >= 5, level * 0.6, level)
    shift_at = rng.uniform(0.4, 0.7) * n * step_s
    level = np.where(start >= shift_at, level * rng.uniform(1.1, 1.25), level)
    rate = level * diurnal * np.exp(rng.normal(0.0, 0.05, n))
    rate *= _bursts(rng, start, step_s, days)
    _idle_gap(rng, rate, step_s)
    prompt = 600.0 * (1.0 + 0.1 * np.sin(2.0 * np.pi * day_frac * 4.0 + rng.uniform(0, 6.3)))
    output = 200.0 * (1.0 + 0.1 * np.sin(2.0 * np.pi * day_frac + rng.uniform(0, 6.3)))
    days_label = f"{days:g}d"
    return RateTrace(f"synthetic seed={seed} {days_label}", float(step_s), start, rate,
                     np.round(prompt, 1), np.round(output, 1))


def _bursts(rng: np.random.Generator, start: FloatArray, step_s: float, days: float
            ) -> FloatArray:
    """Multipliers for ~3 bursts a day (one in each day's busy afternoon), 2-15 min long,
    1.3-1.5x the rate; overlapping bursts do not compound."""
    factor = np.ones(start.size)
    end = float(start[-1]) + step_s
    afternoons = [86400.0 * d + rng.uniform(13.0, 17.0) * 3600.0 for d in range(math.ceil(days))]
    others = [rng.uniform(0.0, end) for _ in range(max(1, round(2 * days)))]
    for begin in (*afternoons, *others):
        length = rng.uniform(120.0, 900.0)
        inside = (start + step_s > begin) & (start < begin + length)
        factor[inside] = np.maximum(factor[inside], rng.uniform(1.3, 1.5))
    return factor


def _idle_gap(rng: np.random.Generator, rate: FloatArray, step_s: float) -> None:
    """Set one hour (whole windows) to exactly 0, in the middle half of a trace of >= 2 h."""
    n = rate.size
    width = math.ceil(3600.0 / step_s)
    if n * step_s < 7200.0 or width >= n:
        return
    first = int(rng.integers(n // 4, max(n // 4 + 1, 3 * n // 4 - width)))
    rate[first:first + width] = 0.0


def synthetic_requests(rate_trace: RateTrace, seed: int = 0, max_requests: int | None = None
                       ) -> RequestTrace:
    """Poisson arrivals from a rate trace, lognormal lengths around each window's means.

    Times are seconds from the first window's start. ``max_requests`` keeps only the first
    that many; without it a trace that would need more than 20 million requests is refused.
    """
    if max_requests is not None and max_requests < 0:
        raise ValueError(f"max_requests must be >= 0, got {max_requests!r}")
    rng = np.random.default_rng(seed)
    counts = rng.poisson(np.maximum(rate_trace.rate, 0.0) * rate_trace.step_s)
    total = int(counts.sum())
    limit = total if max_requests is None else min(total, max_requests)
    if max_requests is None and total > _MAX_SYNTHETIC_REQUESTS:
        raise ValueError(
            f"{rate_trace.name}: {total} requests is too many to draw; pass max_requests or "
            "scale the trace down"
        )
    window = np.repeat(np.arange(counts.size), counts)[:limit]
    offset = rate_trace.start_s - rate_trace.start_s[0] if counts.size else rate_trace.start_s
    arrival = offset[window] + rng.random(window.size) * rate_trace.step_s
    arrival.sort()  # windows are already ordered; sort within each window
    prompt = _lognormal(rng, rate_trace.mean_prompt[window], _PROMPT_SIGMA, _MAX_PROMPT)
    output = _lognormal(rng, rate_trace.mean_output[window], _OUTPUT_SIGMA, _MAX_OUTPUT)
    return RequestTrace(f"{rate_trace.name} requests seed={seed}", arrival, prompt, output)


def _lognormal(rng: np.random.Generator, mean: FloatArray, sigma: float, cap: int) -> IntArray:
    """Integers >= 1 and <= ``cap``, lognormal with the given means (before rounding/capping)."""
    mu = np.log(np.maximum(mean, 1.0)) - sigma * sigma / 2.0
    values = np.rint(rng.lognormal(mu, sigma)) if mean.size else np.zeros(0)
    return np.clip(values, 1, cap).astype(np.int64)
