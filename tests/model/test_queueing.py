"""Fluid fleet model against hand-computed cases, conservation and Erlang-C values."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.config.profiles import default_profile
from scaler.model.queueing import FluidFleet, _Wait, erlang_c

PROF = default_profile()


def test_fluid_below_capacity_has_no_backlog() -> None:
    f = FluidFleet(PROF, tick_s=10.0)
    tick = f.step(rate=3.0, mean_prompt=600, mean_output=200, ready_replicas=2)
    assert tick.backlog == 0.0 and tick.served == pytest.approx(30.0)
    assert tick.utilisation == pytest.approx(3.0 / (2 * PROF.saturated_request_rate(600, 200)))
    floor = PROF.prefill_s(600) + PROF.decode_step_base_s
    assert floor <= tick.ttft_p50_s < floor + 0.02
    assert tick.slo_fraction == pytest.approx(1.0)
    assert tick.load.waiting < 0.1 and tick.load.running > 0


def test_fluid_overload_grows_backlog_by_the_deficit() -> None:
    f = FluidFleet(PROF, tick_s=10.0)
    capacity = 2 * PROF.saturated_request_rate(600, 200)
    ticks = [f.step(rate=capacity + 5.0, mean_prompt=600, mean_output=200, ready_replicas=2)
             for _ in range(3)]
    assert [t.backlog for t in ticks] == pytest.approx([50.0, 100.0, 150.0])
    assert all(t.utilisation == pytest.approx(1.0) for t in ticks)
    assert ticks[2].ttft_p50_s > ticks[0].ttft_p50_s + 1.0
    # Backlog drains at (capacity - rate) per second once demand falls.
    t = f.step(rate=capacity - 10.0, mean_prompt=600, mean_output=200, ready_replicas=2)
    assert t.backlog == pytest.approx(50.0)


def test_fluid_tail_grows_with_utilisation() -> None:
    mu = PROF.saturated_request_rate(600, 200)
    p99 = []
    for share in (0.3, 0.7, 0.95):
        f = FluidFleet(PROF)
        p99.append(f.step(rate=share * 4 * mu, mean_prompt=600, mean_output=200,
                          ready_replicas=4).ttft_p99_s)
    assert p99[0] < p99[1] < p99[2]
    assert p99[2] > 2 * p99[0]


def test_fluid_without_replicas_never_serves() -> None:
    f = FluidFleet(PROF)
    tick = f.step(rate=1.0, mean_prompt=600, mean_output=200, ready_replicas=0)
    assert tick.served == 0 and tick.backlog == 10.0
    assert math.isinf(tick.ttft_p50_s) and tick.slo_fraction == 0.0
    assert tick.load.waiting == 10.0
    assert f.slo_attainment == 0.0
    assert math.isinf(f.ttft_quantiles([0.5])[0])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 200), st.integers(0, 6)), min_size=1, max_size=40))
def test_fluid_conserves_requests(steps: list[tuple[float, int]]) -> None:
    f = FluidFleet(PROF)
    for rate, replicas in steps:
        tick = f.step(rate=rate, mean_prompt=400, mean_output=100, ready_replicas=replicas)
        assert 0 <= tick.slo_fraction <= 1 and 0 <= tick.utilisation <= 1
        assert tick.ttft_p50_s <= tick.ttft_p95_s <= tick.ttft_p99_s
    assert f.arrived_total == pytest.approx(f.served_total + f.backlog, rel=1e-9, abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(fluid=st.floats(0, 1), lo=st.floats(0, 50), width=st.floats(0, 50),
       pw=st.floats(0, 1), theta=st.floats(0.01, 100), q=st.sampled_from([0.5, 0.95, 0.99]))
def test_wait_quantile_inverts_the_cdf(fluid: float, lo: float, width: float, pw: float,
                                       theta: float, q: float) -> None:
    wait = _Wait(fluid, lo, lo + width, pw, theta)
    x = wait.quantile(q)
    assert wait.cdf(x) >= q - 1e-6
    if x > 1e-6:
        assert wait.cdf(x * (1 - 1e-4) - 1e-7) <= q + 1e-6


def test_run_wide_quantiles_and_attainment() -> None:
    f = FluidFleet(PROF)
    one = f.step(rate=20.0, mean_prompt=600, mean_output=200, ready_replicas=1)
    assert f.ttft_quantiles([0.5, 0.99]) == pytest.approx([one.ttft_p50_s, one.ttft_p99_s],
                                                          rel=1e-4)
    f.step(rate=20.0, mean_prompt=600, mean_output=200, ready_replicas=0)
    assert f.slo_attainment == pytest.approx(one.slo_fraction / 2)


def test_erlang_c_known_values() -> None:
    assert erlang_c(1, 0.5) == pytest.approx(0.5)          # M/M/1: P(wait) = rho
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert erlang_c(3, 0.0) == 0.0 and erlang_c(3, 3.0) == 1.0
    # The large-c branch (Poisson CDF) agrees with the recurrence.
    blocking = 1.0
    for k in range(1, 41):
        blocking = 36.0 * blocking / (k + 36.0 * blocking)
    expected = blocking / (1 - 0.9 * (1 - blocking))
    assert erlang_c(40, 36.0) == pytest.approx(expected, rel=1e-9)
