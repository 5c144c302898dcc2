"""The oracle as a true floor: it spends the SLO's miss budget, and nothing beats it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scaler.commands.cli import main
from scaler.config.profiles import default_profile
from scaler.model.capacity import CapacityModel
from scaler.sim.policies import OraclePolicy, StaticPolicy
from scaler.sim.replay import ReplaySettings, make_oracle, oracle_needs, replay, spend_miss_budget
from scaler.sim.synthetic import synthetic_requests
from scaler.sim.traces import RateTrace, RequestTrace

SETTINGS = ReplaySettings()
PROFILE = default_profile()


def rates(*values: float, step_s: float = 600.0, prompt: float = 600.0,
          output: float = 200.0) -> RateTrace:
    n = len(values)
    return RateTrace("steps", step_s, np.arange(n) * step_s, np.asarray(values, dtype=float),
                     np.full(n, prompt), np.full(n, output))


def conversation() -> RequestTrace:
    """10 minutes of a few long-prompt requests a second: one replica serves it all, but
    5-second bins of Poisson arrivals each sized for 99% asked for a second one."""
    return synthetic_requests(rates(2, 4, step_s=300, prompt=1500, output=250), seed=3)


def test_the_budget_goes_where_a_replica_costs_the_fewest_misses() -> None:
    options = [([1, 2, 3], [50.0, 4.0, 0.0]),  # busy bin: its 2nd replica saves 46 misses
               ([1, 2], [3.0, 0.0]),  # quiet bin: its 2nd replica saves 3
               ([0], [0.0])]
    assert spend_miss_budget(options, budget=0.0) == [3, 2, 0]
    assert spend_miss_budget(options, budget=3.0) == [3, 1, 0]
    assert spend_miss_budget(options, budget=7.0) == [2, 1, 0]
    assert spend_miss_budget(options, budget=1e9) == [1, 1, 0]


def test_oracle_needs_spend_the_miss_budget_over_the_whole_trace() -> None:
    trace = rates(40, 180, 420, 90, 0, 300)
    _, per_bin = oracle_needs(trace, SETTINGS, PROFILE)
    _, spent = oracle_needs(trace, SETTINGS, PROFILE, miss_share=0.01)
    capacity = CapacityModel(PROFILE)
    arrivals = trace.rate * trace.step_s
    expected = sum(a * (1 - capacity.slo_fraction(r, 600, 200, int(n))) if n else 0.0
                   for a, r, n in zip(arrivals, trace.rate, spent, strict=True))
    assert expected <= 0.01 * arrivals.sum()
    assert spent.sum() <= per_bin.sum()
    assert spent[4] == 0


def test_the_oracle_is_no_dearer_than_the_one_replica_that_serves_a_conversation() -> None:
    trace = conversation()
    one = replay(trace, StaticPolicy(knob_value=1, gpus_per_replica=1, gpus_per_node=8))
    assert one.slo_attainment >= SETTINGS.slo_target
    oracle = replay(trace, make_oracle(trace))
    assert oracle.slo_attainment >= SETTINGS.slo_target
    assert oracle.gpu_hours <= one.gpu_hours
    times, per_bin = oracle_needs(trace, SETTINGS, PROFILE)  # each 5 s bin at 99%: dearer
    each_bin = OraclePolicy(need_times_s=times, need_replicas=per_bin,
                            pod_lead_s=SETTINGS.pod_startup_s,
                            node_lead_s=SETTINGS.node_startup_s,
                            interval_s=SETTINGS.decision_interval_s, gpus_per_replica=1,
                            gpus_per_node=8)
    assert replay(trace, each_bin).gpu_hours > one.gpu_hours


def no_policy_beats_the_oracle(out: Path) -> dict[str, dict[str, float]]:
    bench = json.loads((out / "bench.json").read_text())
    policies = bench["policies"]
    oracle = policies["oracle"]
    assert oracle["slo_attainment"] >= bench["slo_target"]
    for name, row in policies.items():
        if row["slo_attainment"] >= bench["slo_target"]:
            assert row["gpu_hours"] >= oracle["gpu_hours"], name
    return dict(policies)


@pytest.mark.slow
def test_no_policy_at_its_bench_choice_beats_the_oracle_on_a_short_request_trace(
        tmp_path: Path) -> None:
    trace = conversation()
    path = tmp_path / "conversation.csv"
    path.write_text("arrival_s,prompt_tokens,output_tokens\n" + "".join(
        f"{float(a)!r},{p},{o}\n" for a, p, o in zip(trace.arrival_s, trace.prompt_tokens,
                                              trace.output_tokens, strict=True)))
    assert main(["bench", "--trace", str(path), "--out", str(tmp_path / "b")]) == 0
    no_policy_beats_the_oracle(tmp_path / "b")


@pytest.mark.slow
def test_no_policy_at_its_bench_choice_beats_the_oracle_on_the_synthetic_workload(
        tmp_path: Path) -> None:
    assert main(["bench", "--out", str(tmp_path / "b")]) == 0
    no_policy_beats_the_oracle(tmp_path / "b")
