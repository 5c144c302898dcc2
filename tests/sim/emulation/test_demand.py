"""What `scaler emulate`'s demands ask, over a span of seconds."""

from __future__ import annotations

import numpy as np
import pytest

from scaler.sim.emulation.demand import TraceDemand, windows_of
from scaler.sim.traces import RateTrace, RequestTrace


def rates(*values: float, prompt: tuple[float, ...] | None = None) -> RateTrace:
    n = len(values)
    return RateTrace("t", 10.0, np.arange(n) * 10.0, np.asarray(values),
                     np.asarray(prompt or (100.0,) * n), np.full(n, 50.0))


def test_a_span_inside_one_window_gets_that_windows_rate_and_lengths():
    demand = TraceDemand(rates(2, 8), speed=1.0)
    assert demand.between(11, 12) == (8, 100, 50)
    assert demand.between(3, 3) == (2, 100, 50)  # an instant: its window


def test_a_fast_replay_averages_the_windows_it_passes_and_weights_lengths_by_arrivals():
    """At 20x, one second plays windows 0 and 1 whole: a burst in either is not skipped."""
    demand = TraceDemand(rates(0, 30, prompt=(1000.0, 400.0)), speed=20.0)
    rate, prompt, output = demand.between(0, 1)
    assert (rate, prompt, output) == (15, 400, 50)


def test_the_trace_loops_and_a_span_longer_than_a_loop_gets_one_loops_mean():
    demand = TraceDemand(rates(2, 8), speed=1.0)
    assert demand.loop_s == 20
    assert demand.between(21, 22)[0] == 2  # the first window again
    assert demand.between(15, 25)[0] == pytest.approx(5)  # across the loop's end
    assert demand.between(0, 1000)[0] == pytest.approx(5)


def test_nothing_arriving_is_a_rate_of_0_with_lengths_that_fit():
    assert TraceDemand(rates(0, 0)).between(0, 5) == (0, 100, 50)


def test_a_request_trace_is_counted_into_windows():
    trace = RequestTrace("r", np.asarray([0.5, 1.0, 25.0]), np.asarray([100, 300]).repeat(
        [2, 1]), np.asarray([10, 10, 30]))
    windows = windows_of(trace, 10.0)
    assert list(windows.rate) == [0.2, 0.0, 0.1]
    assert list(windows.mean_prompt) == [100, 100, 300]  # the empty window keeps the last
    assert list(windows.mean_output) == [10, 10, 30]
