"""The predictive planner, rule by rule."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from scaler.config.profiles import default_profile
from scaler.model.capacity import CapacityModel
from scaler.model.forecast.forecaster import DemandForecaster
from scaler.model.predictive import (
    FleetState,
    PlannerSettings,
    PredictivePlanner,
    history_step_starts,
)

STEP = 300.0
DAY = 86400.0
CAPACITY = CapacityModel(default_profile())


def with_settings(**flat: float) -> PlannerSettings:
    """Default planner settings with some changed, each named by its field in whichever part."""
    base = PlannerSettings()
    changes: dict[str, object] = {}
    for part in ("plan", "bounds", "nodes"):
        spec = getattr(base, part)
        mine = {k: v for k, v in flat.items() if hasattr(spec, k)}
        if mine:
            changes[part] = dataclasses.replace(spec, **mine)
    own = {k: v for k, v in flat.items() if hasattr(base, k)}
    assert len(own) + sum(hasattr(getattr(base, p), k) for p in ("plan", "bounds", "nodes")
                          for k in flat) == len(flat), flat
    return dataclasses.replace(base, **changes, **own)


def planner(history: np.ndarray | None = None, **settings: float) -> PredictivePlanner:
    """A planner whose forecaster has seen ``history`` (one value per step from t=0)."""
    forecaster = DemandForecaster(step_s=STEP)
    p = PredictivePlanner(with_settings(**settings), CAPACITY, forecaster)
    if history is not None:
        times = np.arange(len(history)) * STEP
        forecaster.warm_start(times, history)
        p.warm_started(float(times[-1]))
    return p


def state(now_s: float, *, rate: float, replicas: int = 4, starting: int = 0,
          nodes: int = 1, ready_nodes: int = 1, pending: int = 0,
          backlog: float = 0.0) -> FleetState:
    return FleetState(now_s=now_s, replicas=replicas, starting_replicas=starting, nodes=nodes,
                      ready_nodes=ready_nodes, pending_replicas=pending, observed_rate=rate,
                      backlog=backlog, mean_prompt_tokens=600, mean_output_tokens=200)


def office_hours(days: float, *, low: float, high: float) -> np.ndarray:
    """A daily square wave: ``high`` from 09:00 to 17:00, ``low`` otherwise."""
    t = np.arange(int(days * DAY / STEP)) * STEP
    hour = (t % DAY) / 3600
    return np.where((hour >= 9) & (hour < 17), high, low)


def test_a_predicted_ramp_is_met_one_lead_time_early():
    before_ramp = 7 * DAY + 9 * 3600 - 150  # 08:57:30 on day 8
    p = planner(office_hours(before_ramp / DAY, low=20, high=300))
    plan = p.plan(state(before_ramp, rate=20, replicas=1))
    assert plan.need_now <= 2
    assert plan.need_ahead >= plan.need_now + 2  # more replicas before the load shows
    assert plan.replicas == plan.need_ahead
    assert plan.reason.startswith("forecast")


def test_prometheus_history_teaches_what_the_same_steps_fed_live_would():
    """Prometheus labels ``rate(x[5m])`` at T with the 5 minutes before T; the planner labels
    each step's mean with its start. Read through ``history_step_starts``, the history as
    Prometheus holds it gives the plans, decision by decision through the morning ramp, of
    the same steps labelled by their start. Read as it comes, each plan is the one due 5
    minutes later (the season learnt one step late)."""
    history = office_hours(7 + 8.5 / 24, low=20, high=300)  # to 08:30 of day 8
    by_start = planner(history)
    forecaster = DemandForecaster(step_s=STEP)
    from_prometheus = PredictivePlanner(with_settings(), CAPACITY, forecaster)
    times = history_step_starts([(k + 1) * STEP for k in range(len(history))], STEP)
    forecaster.warm_start(times, history)
    from_prometheus.warm_started(times[-1])
    for now in np.arange(7 * DAY + 8.5 * 3600, 7 * DAY + 9.5 * 3600, 15.0):
        live = state(float(now), rate=20 if now < 7 * DAY + 9 * 3600 else 300, replicas=4)
        assert from_prometheus.plan(live) == by_start.plan(live)


def test_need_ahead_is_the_peak_within_the_lead_time_not_its_end():
    """In a daily decline the forecast falls within one pod lead time: its peak counts.

    (A smooth cycle: on a square wave the naive guard rightly holds the last value until the
    drop, and the forecast does not fall.)"""
    t = np.arange(int((3 + 16.75 / 24) * DAY / STEP)) * STEP  # to 16:40 on day 4
    history = 5000.0 + 4900.0 * np.cos(2 * np.pi * (t - 13 * 3600) / DAY)  # peak at 13:00
    p = planner(history)
    now = len(history) * STEP  # one step after the last reading: steps +1 and +2 ahead
    f = p.forecaster
    uppers = [f.forecast(h).upper for h in (STEP, 2 * STEP)]
    assert uppers[0] > uppers[1]  # falling within the lead time
    needs = [CAPACITY.replicas_for(u, 600, 200) for u in uppers]
    assert needs[0] > needs[1]
    plan = p.plan(state(now, rate=float(history[-1]), replicas=60))
    assert plan.forecast_upper == max(uppers)
    assert plan.need_ahead == needs[0]


def test_idle_until_a_predicted_ramp_then_active_before_it():
    p = planner(office_hours(7 + 3 / 24, low=0, high=200))
    night = p.plan(state(7 * DAY + 3 * 3600, rate=0, replicas=0, nodes=0, ready_nodes=0))
    assert (night.replicas, night.active) == (0, False)
    early = p.plan(state(7 * DAY + 9 * 3600 - 150, rate=0, replicas=0, nodes=0, ready_nodes=0))
    assert early.active is True and early.replicas > 0  # pre-warm before any request


def test_min_replicas_holds_an_idle_workload():
    p = planner(np.zeros(300), min_replicas=1)
    assert p.plan(state(300 * STEP, rate=0, replicas=1)).replicas == 1


def test_past_the_window_an_idle_workload_keeps_min_replicas():
    p = planner(np.zeros(300), min_replicas=2)
    now = 300 * STEP
    assert p.plan(state(now, rate=0, replicas=5)).replicas == 5  # the fresh-planner hold
    plan = p.plan(state(now + 315, rate=0, replicas=5))
    assert plan.replicas == 2 and "bounded to [2, 100]" in plan.reason


def test_demand_beyond_max_replicas_gets_max_replicas():
    p = planner(max_replicas=5)
    assert CAPACITY.replicas_for(5000, 600, 200) > 5
    plan = p.plan(state(0, rate=5000, replicas=4))
    assert plan.replicas == 5 and plan.need_now > 5


def test_no_scale_down_while_replicas_are_starting():
    p = planner()
    plan = p.plan(state(0, rate=5, replicas=10, starting=2))
    assert plan.replicas == 10 and "still starting" in plan.reason


@pytest.mark.parametrize(("starting", "expected"), [(2, 10), (0, 2)])
def test_past_the_window_replicas_starting_still_hold_the_count(starting: int,
                                                                expected: int) -> None:
    """Past the scale-down window only starting replicas keep the count; none, and it drops."""
    p = planner(np.full(2 * 288, 25.0))  # a steady 25 req/s: 2 replicas
    assert CAPACITY.replicas_for(25, 600, 200) == 2
    now = 2 * DAY
    assert p.plan(state(now, rate=25, replicas=10)).replicas == 10  # the fresh-planner hold
    plan = p.plan(state(now + 315, rate=25, replicas=10, starting=starting))
    assert plan.replicas == expected
    assert ("still starting" in plan.reason) == (starting > 0)


def test_scale_down_waits_for_the_window_then_keeps_the_slo():
    p = planner()
    busy = p.plan(state(0, rate=200, replicas=4)).replicas
    assert busy == CAPACITY.replicas_for(200, 600, 200)
    low = 40.0
    t = 15.0
    while t < 300:  # within the 300 s window the busy target still stands
        assert p.plan(state(t, rate=low, replicas=busy)).replicas == busy
        t += 15
    plan = None
    for _ in range(60):  # past the window, the forecast learns the new level and lets go
        plan = p.plan(state(t, rate=low, replicas=busy))
        t += 15
    assert plan is not None and plan.replicas < busy
    # N-1 is never chosen unless it still meets the SLO at the observed demand.
    assert CAPACITY.slo_fraction(low, 600, 200, plan.replicas) >= CAPACITY.slo_target
    assert plan.replicas >= CAPACITY.replicas_for(low, 600, 200)


@pytest.mark.parametrize("rate", [20.0, 41.0, 62.0])
def test_scale_down_stops_at_the_fewest_replicas_meeting_the_slo(rate: float) -> None:
    """Past the window the count drops to the SLO's need, not to throughput's (one fewer)."""
    per_replica = CAPACITY.per_replica_rate(600, 200)
    need = CAPACITY.replicas_for(rate, 600, 200)
    assert need > math.ceil(rate / per_replica)  # a rate where the SLO costs one more replica
    p = planner(np.full(2 * 288, rate))
    now = 2 * DAY
    assert p.plan(state(now, rate=rate, replicas=10)).replicas == 10
    plan = p.plan(state(now + 315, rate=rate, replicas=10))
    assert plan.replicas == need
    assert CAPACITY.slo_fraction(rate, 600, 200, plan.replicas) >= CAPACITY.slo_target
    assert CAPACITY.slo_fraction(rate, 600, 200, plan.replicas - 1) < CAPACITY.slo_target


def test_a_backlog_is_demand_to_drain():
    p = planner()
    calm = p.plan(state(0, rate=50)).need_now
    queued = planner().plan(state(0, rate=50, backlog=3000)).need_now
    assert queued > calm


def test_nodes_are_planned_one_node_lead_time_ahead():
    lead = 900 + 180 + 15
    now = 7 * DAY + 9 * 3600 - lead + 60
    p = planner(office_hours(now / DAY, low=20, high=600))
    plan = p.plan(state(now, rate=20, replicas=1))
    # Nodes for the ramp's replicas are ordered before the replicas themselves are needed.
    assert plan.nodes >= 2 and plan.nodes > -(-plan.replicas // 8)


def test_nodes_never_shrink_while_pods_are_pending_or_nodes_joining():
    p = planner()
    assert p.plan(state(0, rate=10, replicas=1, nodes=3, ready_nodes=3, pending=1)).nodes == 3
    assert p.plan(state(15, rate=10, replicas=1, nodes=3, ready_nodes=2)).nodes == 3


@pytest.mark.parametrize(("pending", "ready_nodes", "expected"), [
    (1, 3, 3),  # a pod pending
    (0, 2, 3),  # a node joining
    (0, 3, 1),  # neither: down to what one replica needs
])
def test_past_the_node_window_pending_pods_or_joining_nodes_hold_the_nodes(
        pending: int, ready_nodes: int, expected: int) -> None:
    """Past the node scale-down window only the pending/joining guard keeps the node count."""
    p = planner(np.full(2 * 288, 10.0))  # a steady 10 req/s: 1 replica, 1 node
    now = 2 * DAY
    assert p.plan(state(now, rate=10, replicas=1, nodes=3, ready_nodes=3)).nodes == 3
    later = now + PlannerSettings().node_scale_down_window_s + 15
    plan = p.plan(state(later, rate=10, replicas=1, nodes=3, ready_nodes=ready_nodes,
                        pending=pending))
    assert plan.nodes == expected


@pytest.mark.parametrize(("rate", "spare_nodes", "expected"), [
    (20.0, 2, 1 + 2),  # one node needed: the spare ones on top
    (20.0, 0, 1),
    (0.0, 2, 0),  # no node needed: no spare either
])
def test_spare_nodes_are_added_only_when_nodes_are_needed(rate: float, spare_nodes: int,
                                                          expected: int) -> None:
    p = planner(spare_nodes=spare_nodes)
    replicas = CAPACITY.replicas_for(rate, 600, 200)
    plan = p.plan(state(0, rate=rate, replicas=replicas, nodes=0, ready_nodes=0))
    assert plan.nodes == expected


def test_the_node_plan_stays_within_the_pool_bounds():
    p = planner(min_nodes=2, max_nodes=3)
    assert p.plan(state(0, rate=0, replicas=0, nodes=0, ready_nodes=0)).nodes == 2
    assert p.plan(state(15, rate=5000, replicas=4, nodes=2, ready_nodes=2)).nodes == 3


def test_a_restarted_planner_holds_the_running_replicas_for_one_window():
    p = planner()  # a scaler restarted mid-ramp: nothing remembered
    low = 40.0
    first = p.plan(state(0, rate=low, replicas=12, nodes=2, ready_nodes=2))
    assert first.replicas == 12 and "stabilised" in first.reason
    assert first.nodes == 2
    t = 15.0
    while t < 300:
        assert p.plan(state(t, rate=low, replicas=12, nodes=2, ready_nodes=2)).replicas == 12
        t += 15
    plan = p.plan(state(t + 300, rate=low, replicas=12, nodes=2, ready_nodes=2))
    assert plan.replicas == CAPACITY.replicas_for(low, 600, 200) < 12


def test_an_idle_workload_plans_no_node_and_no_spare_nodes():
    """Zeros all night leave the forecast's bound at float noise: that is no demand. (The
    day carries some noise, as served traffic does: on a noiseless square wave the error
    scale collapses to its floor at night, and the ramp's errors over it, a few per cent of
    the 2-hour forecasts, draw a bound of 0.001 req/s at 30 minutes, about one request
    within the node lead time, for which a node is planned.)"""
    night = 7 * DAY + 3 * 3600
    day = office_hours(night / DAY, low=0, high=200)
    noise = np.random.default_rng(1).normal(0.0, 10.0, day.size)
    p = planner(np.where(day > 0, day + noise, 0.0), spare_nodes=2)
    plan = p.plan(state(night, rate=0, replicas=0, nodes=0, ready_nodes=0))
    assert (plan.replicas, plan.active, plan.nodes) == (0, False, 0)


def test_an_office_hours_workload_first_seen_at_work_lets_its_replicas_go_at_night():
    """A workload that serves 200 req/s from 09:00 to 17:00 and nothing otherwise, whose
    history begins at 09:00 on its first day (deployed at work). Its evening zeros are no
    requests, not collection holes (the service's missing readings are NaN): by 19:00 it
    plans at most one replica and by 23:00 none. (With zeros taken for holes it held its
    day's 10 replicas all night, every night: the nights were never learnt.)"""
    start = 9 * 3600.0
    history = office_hours(7, low=0, high=200)[int(start / STEP):]
    p = planner()
    times = start + np.arange(len(history)) * STEP
    p.forecaster.warm_start(times, history)
    p.warm_started(float(times[-1]))
    t, replicas, planned = 7 * DAY + 17 * 3600, 10, {}
    while t <= 7 * DAY + 23 * 3600:
        replicas = p.plan(state(t, rate=0, replicas=replicas)).replicas
        planned[t] = replicas
        t += 15.0
    assert planned[7 * DAY + 19 * 3600] <= 1
    assert planned[7 * DAY + 23 * 3600] == 0


@pytest.mark.parametrize(("gpus_per_replica", "gpus_per_node", "nodes"), [
    (1, 8, 1),  # 5 replicas share one node
    (3, 8, 3),  # two whole replicas per node (the 2 GPUs left hold no third)
    (4, 8, 3),
    (8, 8, 5),
])
def test_nodes_hold_whole_replicas(gpus_per_replica: int, gpus_per_node: int,
                                   nodes: int) -> None:
    p = planner(gpus_per_replica=gpus_per_replica, gpus_per_node=gpus_per_node)
    plan = p.plan(state(0, rate=0, replicas=5, nodes=0, ready_nodes=0))
    assert (plan.replicas, plan.nodes) == (5, nodes)


def test_a_cold_forecaster_is_no_forecast_not_zero_demand() -> None:
    p = planner()  # nothing seen: a restarted scaler without history
    first = p.plan(state(0, rate=40))
    assert math.isnan(first.forecast_mean) and math.isnan(first.forecast_upper)
    assert first.need_ahead == first.need_now >= 2  # sized for the 40 req/s it sees
    assert first.reason.startswith("no forecast yet")
    later = first
    for i in range(1, 50):  # 735 s of 15 s decisions: two forecaster steps fed
        later = p.plan(state(i * 15.0, rate=40))
    assert later.forecast_mean == pytest.approx(40, rel=0.1)
    assert "no forecast yet" not in later.reason



def saturated(now_s: float, *, rate: float, backlog: float, pods: int, serving: float,
              replicas: int) -> FleetState:
    """``pods`` pods at capacity, completing ``serving`` requests/s together."""
    return dataclasses.replace(state(now_s, rate=rate, replicas=replicas, backlog=backlog),
                               mean_prompt_tokens=1000, saturated_pods=pods,
                               saturated_rate=serving)


def test_a_saturated_fleet_gets_what_its_measured_throughput_needs():
    """The profile says one replica serves far more; the pods at capacity say 5 req/s each:
    10 req/s and 80 waiting need 3, whatever the capacity model has learnt so far."""
    p = planner()
    plan = p.plan(saturated(0.0, rate=10, backlog=80, pods=2, serving=10, replicas=2))
    assert CAPACITY.replicas_for(10 + 80 / 60, 1000, 200) == 1  # what the profile alone says
    assert plan.replicas == plan.need_now == 3
    assert "2 pod(s) at capacity serve 5 req/s each: 11.3 req/s with the queue needs 3" in (
        plan.reason)
    bounded = planner(max_replicas=2).plan(
        saturated(0.0, rate=10, backlog=80, pods=2, serving=10, replicas=2))
    assert bounded.replicas == 2  # maxReplicas still bounds it


def test_a_saturated_fleet_is_never_scaled_down():
    """One pod at capacity holds the count past the scale-down window, even if the demand
    over the pods' throughput says fewer would do (they are not proven to)."""
    p = planner(scale_down_window_s=60)
    for t in range(0, 600, 15):
        plan = p.plan(saturated(float(t), rate=10, backlog=5, pods=1, serving=8, replicas=6))
        assert plan.replicas == 6, plan.reason
    assert "hold: 1 pod(s) at capacity" in plan.reason
    free = p.plan(state(615.0, rate=10, replicas=6))
    assert free.replicas == 6  # the window still holds it...
    later = p.plan(state(700.0, rate=10, replicas=6))
    assert later.replicas < 6  # ...then the fleet may shrink


def test_an_impossible_saturated_reading_sets_no_floor():
    p = planner()
    for serving in (math.inf, -5.0, math.nan):
        plan = p.plan(saturated(0.0, rate=10, backlog=0, pods=2, serving=serving, replicas=2))
        assert plan.need_now == CAPACITY.replicas_for(10, 1000, 200)
