"""Fleet models against hand-computed cases, conservation and the saturation formula."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.config.profiles import default_profile
from scaler.model.profile import ReplicaProfile
from scaler.sim.fleet import FluidFleet, RequestFleet, _Wait, erlang_c
from scaler.sim.traces import RequestTrace, read_trace

TICK = 0.05
TRACES = Path(__file__).resolve().parents[3] / "shared" / "traces"
PROF = default_profile()


def fleet(replicas: int = 1, profile: ReplicaProfile = PROF, tick_s: float = TICK
          ) -> RequestFleet:
    f = RequestFleet(profile, tick_s=tick_s)
    f.set_replicas([f"r{i}" for i in range(replicas)])
    return f


def service_s(prompt: int, output: int, prof: ReplicaProfile = PROF) -> float:
    """Alone on a replica: one prefill step, then ``output`` decode steps."""
    prefill = prof.decode_step_base_s + prof.prefill_s(prompt)
    decode = sum(prof.decode_step_s(1, prompt + g) for g in range(output))
    return prefill + decode


# --------------------------------------------------------------------------- request fleet


def test_one_request_ttft_is_prefill_plus_one_step() -> None:
    f = fleet()
    f.add_arrivals([0.31], [1000], [10])
    f.advance_to(5.0)
    done = f.completed
    expected = PROF.prefill_s(1000) + PROF.decode_step_s(1, 1000)
    assert done.queue_s[0] == pytest.approx(0.0)
    assert done.ttft_s[0] == pytest.approx(expected, abs=TICK)
    assert done.finish_s[0] - 0.31 == pytest.approx(service_s(1000, 10), abs=TICK)
    assert f.unfinished == 0


def test_second_request_waits_for_the_first_slot() -> None:
    single = dataclasses.replace(PROF, max_num_seqs=1)
    f = fleet(profile=single)
    f.add_arrivals([0.0, 0.0], [500, 500], [50, 50])
    f.advance_to(10.0)
    done = f.completed
    first_service = done.finish_s[0] - done.arrival_s[0]
    assert first_service == pytest.approx(service_s(500, 50), abs=TICK)
    assert done.queue_s[0] == 0.0
    assert done.queue_s[1] == pytest.approx(first_service, abs=TICK)
    assert done.ttft_s[1] == pytest.approx(first_service + done.ttft_s[0], abs=TICK)


def test_no_replica_means_waiting_until_one_is_ready() -> None:
    f = RequestFleet(PROF, tick_s=TICK)
    f.add_arrivals([1.0, 2.0], [200, 200], [5, 5])
    f.advance_to(5.0)
    assert f.loads() == {}
    assert f.queued == 2 and len(f.completed) == 0
    f.set_replicas(["a"])
    f.advance_to(10.0)
    done = f.completed
    assert len(done) == 2
    assert done.queue_s.tolist() == pytest.approx([4.0, 3.0], abs=TICK)
    assert done.ttft_s[0] == pytest.approx(4.0 + PROF.prefill_s(200), abs=2 * TICK)


def test_removed_replica_requeues_its_requests() -> None:
    f = fleet(2)
    f.add_arrivals([0.0] * 4, [1000] * 4, [2000] * 4)
    f.advance_to(1.0)
    assert [load.running for load in f.loads().values()] == [2.0, 2.0]
    f.set_replicas(["r1"])
    assert f.requeued == 2
    assert f.in_flight == 2 and f.queued == 2
    f.advance_to(200.0)
    done = f.completed
    assert len(done) == 4 and f.unfinished == 0
    # The requeued two ran again from scratch: their first token came after the move.
    assert np.sum(done.ttft_s > 1.0) == 2


def test_least_loaded_routing_spreads_requests() -> None:
    f = fleet(4)
    f.add_arrivals([0.0] * 8, [100] * 8, [1000] * 8)
    f.advance_to(0.5)
    loads = f.loads()
    assert sorted(loads) == ["r0", "r1", "r2", "r3"]
    assert [load.running for load in loads.values()] == [2.0] * 4
    assert all(load.waiting == 0 for load in loads.values())
    kv = [load.kv_cache_usage for load in loads.values()]
    assert kv[0] == pytest.approx(kv[3]) and 0 < kv[0] < 0.01


def test_fleet_queue_is_spread_over_replicas() -> None:
    single = dataclasses.replace(PROF, max_num_seqs=1)
    f = fleet(2, profile=single)
    f.add_arrivals([0.0] * 6, [100] * 6, [500] * 6)
    f.advance_to(0.5)
    assert [(load.waiting, load.running) for load in f.loads().values()] == [(2.0, 1.0)] * 2


def test_tokens_are_conserved() -> None:
    rng = np.random.default_rng(3)
    n = 300
    arrival = np.sort(rng.uniform(0, 20, n))
    prompt, output = rng.integers(1, 3000, n), rng.integers(1, 300, n)
    f = fleet(3)
    f.add_arrivals(arrival, prompt, output)
    f.advance_to(600.0)
    assert f.unfinished == 0 and len(f.completed) == n
    assert f.served_tokens.prompt == pytest.approx(prompt.sum())
    assert f.served_tokens.generation == pytest.approx(output.sum())
    done = f.completed
    assert np.all(done.ttft_s >= done.queue_s)
    assert np.all(done.finish_s - done.arrival_s >= done.ttft_s - 1e-9)


def test_overload_throughput_matches_the_saturated_rate() -> None:
    n = 6000
    arrival = np.linspace(0, 100, n)  # 60 req/s against ~30 req/s of capacity
    f = fleet(tick_s=0.1)
    f.add_arrivals(arrival, np.full(n, 600), np.full(n, 200))
    f.advance_to(150.0)
    finish = f.completed.finish_s
    measured = np.sum((finish > 50) & (finish <= 150)) / 100.0
    assert measured == pytest.approx(PROF.saturated_request_rate(600, 200), rel=0.05)
    assert f.loads()["r0"].kv_cache_usage > 0.8


def test_oversized_requests_are_rejected() -> None:
    f = fleet()
    f.add_arrivals([0.0, 1.0], [500_000, 10], [10, 10])
    assert f.rejected == 1
    f.advance_to(5.0)
    assert len(f.completed) == 1 and f.unfinished == 0


def test_input_errors() -> None:
    f = fleet()
    with pytest.raises(ValueError, match="must be finite and sorted"):
        f.add_arrivals([2.0, 1.0], [1, 1], [1, 1])
    with pytest.raises(ValueError, match="differ in length"):
        f.add_arrivals([1.0], [1, 2], [1])
    f.add_arrivals([5.0], [1], [1])
    with pytest.raises(ValueError, match="before an earlier request"):
        f.add_arrivals([4.0], [1], [1])
    f.advance_to(3.0)
    with pytest.raises(ValueError, match="before the fleet's time"):
        f.advance_to(2.0)
    with pytest.raises(ValueError, match="duplicate replica ids"):
        f.set_replicas(["a", "a"])


def test_runs_are_deterministic_and_tick_robust() -> None:
    rng = np.random.default_rng(9)
    arrival = np.sort(rng.uniform(0, 60, 1500))
    prompt, output = rng.integers(10, 2000, 1500), rng.integers(1, 400, 1500)
    runs = []
    for tick in (0.05, 0.05, 0.2):
        f = fleet(2, tick_s=tick)
        f.advance(60.0, arrival, prompt, output)
        f.advance_to(200.0)
        runs.append(f.completed.ttft_s)
    assert np.array_equal(runs[0], runs[1])
    assert np.median(runs[2]) == pytest.approx(np.median(runs[0]), abs=0.2)


@pytest.mark.skipif(not TRACES.is_dir(), reason="shared traces not present")
def test_azure_trace_runs_to_completion() -> None:
    trace = read_trace(TRACES / "azure_llm_code_2023.csv")
    assert isinstance(trace, RequestTrace)
    f = fleet(6, tick_s=0.1)
    f.add_trace(trace)
    for t in np.arange(15.0, 3615.0, 15.0):
        f.advance_to(float(t))
    assert len(f.completed) == len(trace) and f.unfinished == 0
    assert np.percentile(f.completed.ttft_s, 50) < 0.5


# --------------------------------------------------------------------------- fluid fleet


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
