"""Synthetic workloads: deterministic, with the features they promise."""

from __future__ import annotations

import numpy as np
import pytest

from scaler.sim.synthetic import synthetic_requests, synthetic_workload
from scaler.sim.traces import RateTrace


def test_synthetic_workload_is_deterministic() -> None:
    a, b = synthetic_workload(seed=3), synthetic_workload(seed=3)
    assert np.array_equal(a.rate, b.rate) and np.array_equal(a.mean_prompt, b.mean_prompt)
    assert not np.array_equal(a.rate, synthetic_workload(seed=4).rate)
    assert a.name == "synthetic seed=3 2d"


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_synthetic_workload_features(seed: int) -> None:
    trace = synthetic_workload(seed=seed, days=2, step_s=60.0)
    assert len(trace) == 2 * 1440 and trace.step_s == 60.0
    zeros = np.flatnonzero(trace.rate == 0.0)
    assert zeros.size == 60 and np.all(np.diff(zeros) == 1)  # one idle hour, exact zeros
    assert 300 <= trace.rate.max() <= 550
    hours = (trace.start_s % 86400) / 3600
    night = trace.rate[(hours >= 2) & (hours < 6) & (trace.rate > 0)].mean()
    afternoon = trace.rate[(hours >= 14) & (hours < 18)].mean()
    assert afternoon > 2 * night
    assert trace.mean_prompt.mean() == pytest.approx(600, rel=0.05)
    assert trace.mean_output.mean() == pytest.approx(200, rel=0.05)


def test_synthetic_workload_weekly_modulation() -> None:
    trace = synthetic_workload(seed=0, days=14, step_s=600.0)
    day = (trace.start_s // 86400).astype(int) % 7
    weekend = trace.rate[day >= 5].mean()
    weekday = trace.rate[day < 5].mean()
    assert weekend < 0.8 * weekday


def test_synthetic_requests_follow_the_rate_trace() -> None:
    rates = RateTrace("r", 60.0, np.array([0.0, 60.0, 120.0, 180.0]),
                      np.array([10.0, 0.0, 20.0, 5.0]),
                      np.array([600.0] * 4), np.array([200.0] * 4))
    req = synthetic_requests(rates, seed=7)
    again = synthetic_requests(rates, seed=7)
    assert np.array_equal(req.arrival_s, again.arrival_s)
    assert np.array_equal(req.prompt_tokens, again.prompt_tokens)
    counts = np.bincount((req.arrival_s // 60).astype(int), minlength=4)
    assert counts[1] == 0
    assert abs(counts[2] - 1200) < 150 and abs(counts[0] - 600) < 100
    assert np.all(np.diff(req.arrival_s) >= 0)
    assert req.prompt_tokens.mean() == pytest.approx(600, rel=0.15)
    assert req.output_tokens.mean() == pytest.approx(200, rel=0.15)
    assert req.prompt_tokens.min() >= 1
    first = synthetic_requests(rates, seed=7, max_requests=100)
    assert len(first) == 100 and first.duration_s < 60.0
