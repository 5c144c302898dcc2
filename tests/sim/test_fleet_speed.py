"""The replay's pods at another speed than the profile the scaler starts from
(``--fleet-speed``, ``--no-gpu-metrics``): what their pages show, what the predictive policy
learns from them, and the oracle planning with their true speed."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from scaler.commands.cli import main
from scaler.config.profiles import default_profile
from scaler.model.capacity import CapacityModel
from scaler.model.queueing import FluidFleet
from scaler.sim.pages import FluidPages
from scaler.sim.policy_catalog import make_policy
from scaler.sim.replay import ReplaySettings, make_oracle, replay
from scaler.sim.request_fleet import RequestFleet, fleet_pages
from scaler.sim.speed import at_speed
from scaler.sim.traces import RateTrace

PROFILE = default_profile()


def steady(rate: float, hours: float = 2.0, prompt: float = 600, output: float = 200
           ) -> RateTrace:
    n = int(hours * 6)
    return RateTrace(f"steady {rate:g}", 600.0, np.arange(n) * 600.0, np.full(n, rate),
                     np.full(n, prompt), np.full(n, output))


def test_a_faster_profile_serves_that_many_times_the_requests() -> None:
    for speed in (0.5, 1.5):
        ratio = (at_speed(PROFILE, speed).saturated_request_rate(600, 200)
                 / PROFILE.saturated_request_rate(600, 200))
        assert ratio == pytest.approx(speed)
    assert at_speed(PROFILE, 1.0) is PROFILE
    with pytest.raises(ValueError, match="fleet speed must be a finite number > 0, got 0"):
        at_speed(PROFILE, 0)


def test_a_saturated_fluid_pod_shows_its_queue_and_its_true_rate_an_idle_one_nothing() -> None:
    slow = at_speed(PROFILE, 0.5)
    fleet, pages = FluidFleet(slow, tick_s=5.0), FluidPages()
    pages.pages(["a", "b"])
    mu = slow.saturated_request_rate(600, 200)
    for _ in range(12):  # a minute at three times what two pods serve
        tick = fleet.step(rate=6 * mu, mean_prompt=600, mean_output=200, ready_replicas=2)
        pages.served(tick, ready=2, mean_prompt=600, mean_output=200, tick_s=5.0)
    page = pages.pages(["a", "b"])["a"]
    assert page.waiting > 10
    assert page.completed / 60.0 == pytest.approx(mu)
    assert page.generation_tokens == pytest.approx(200 * page.completed)
    assert page.gpu_busy_s == pytest.approx(60.0, rel=0.01)
    late = pages.pages(["a", "b", "c"])["c"]  # a pod that just joined starts from zero
    assert late.completed == 0 and late.gpu_busy_s == 0
    fleet, idle = FluidFleet(slow, tick_s=5.0), FluidPages()
    idle.pages(["a"])
    for _ in range(12):
        tick = fleet.step(rate=0.0, mean_prompt=600, mean_output=200, ready_replicas=8)
        idle.served(tick, ready=8, mean_prompt=600, mean_output=200, tick_s=5.0)
    page = idle.pages(["a"])["a"]
    assert page.waiting == 0 and page.running < 0.01 and page.gpu_busy_s < 0.6


def test_a_request_fleet_pod_counts_what_it_completed_and_its_busy_time() -> None:
    fleet = RequestFleet(PROFILE, tick_s=0.1)
    fleet.set_replicas(["a", "b"])
    fleet.advance(30.0, np.linspace(0.0, 9.0, 10), np.full(10, 100), np.full(10, 20))
    pages = fleet_pages(fleet)
    assert sum(p.completed for p in pages.values()) == 10
    assert sum(p.generation_tokens for p in pages.values()) == pytest.approx(200)
    assert sum(p.prompt_tokens for p in pages.values()) == pytest.approx(1000)
    busy = sum(p.gpu_busy_s or 0 for p in pages.values())
    assert 0 < busy < 15  # busy while serving only, not the 30 s
    assert all((p.gpu_busy_s == 0) == (p.completed == 0) for p in pages.values())


@pytest.mark.parametrize(("speed", "gpu_metrics"), [(0.5, False), (1.5, True), (1.0, True)])
def test_the_predictive_policy_learns_the_pods_true_speed(speed, gpu_metrics) -> None:
    """Fails if the replay's policy does not run the service's capacity learning: slow pods
    (no GPU data) are learnt from their saturation, fast ones from their load."""
    settings = ReplaySettings(fleet_speed=speed, gpu_metrics=gpu_metrics)
    trace = steady(150.0)
    policy = make_policy("predictive", None, trace, settings, PROFILE)
    result = replay(trace, policy, settings=settings, profile=PROFILE)
    assert policy.planner.capacity.correction == pytest.approx(speed, rel=0.05)
    assert result.parameters["fleet_speed"] == speed
    assert result.parameters["gpu_metrics"] is gpu_metrics
    assert result.slo_attainment > 0.9


def test_the_oracle_plans_with_the_pods_true_speed() -> None:
    trace = steady(150.0, hours=1)
    needs = {speed: make_oracle(trace, settings=ReplaySettings(fleet_speed=speed),
                                profile=PROFILE).peak_replicas for speed in (1.0, 2.0)}
    capacity = CapacityModel(at_speed(PROFILE, 2.0))
    assert needs[2.0] == capacity.replicas_for(150.0, 600, 200) < needs[1.0]


def test_replay_and_bench_take_the_fleet_flags_and_record_them(tmp_path, capsys) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("timestamp_s,requests_per_s,mean_input_tokens,mean_output_tokens\n"
                     + "".join(f"{i * 600},100,600,200\n" for i in range(3)))
    out = tmp_path / "out"
    assert main(["replay", "--trace", str(trace), "--policy", "predictive", "--out", str(out),
                 "--fleet-speed", "0.5", "--no-gpu-metrics"]) == 0
    parameters = json.loads((out / "summary.json").read_text())["parameters"]
    assert parameters["fleet_speed"] == 0.5 and parameters["gpu_metrics"] is False
    for bad in ("0", "-1", "nan", "fast"):
        assert main(["bench", "--trace", str(trace), "--fleet-speed", bad]) == 2
        err = capsys.readouterr().err
        assert f"argument --fleet-speed: '{bad}' is " in err
        assert "> 0" in err
        assert "Traceback" not in err
    assert not math.isnan(parameters["fleet_speed"])
