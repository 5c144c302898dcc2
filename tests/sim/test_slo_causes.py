"""Why a replay missed its SLO: each missed request blamed on the fleet's state when it came."""

from __future__ import annotations

import math

from scaler.sim.results import DecisionRow, ReplayResult
from scaler.sim.slo_causes import CAP, HEADROOM, LEAD_TIME, classify_misses, slo_verdict


def row(desired: int, ready: int, misses: float) -> DecisionRow:
    return DecisionRow(time_s=0.0, desired_replicas=desired, ready_replicas=ready,
                       desired_nodes=1, ready_nodes=1, demand=10.0, slo_misses=misses)


def run(rows: list[DecisionRow], *, slo: float = 0.5) -> ReplayResult:
    return ReplayResult(policy="reactive", parameters={"slo_target": 0.99},
                        requests=1000.0, slo_attainment=slo, ttft_p50_s=0.1, ttft_p95_s=3.0,
                        ttft_p99_s=9.0, gpu_hours=1.0, node_hours=1.0, scale_events=2,
                        decisions=rows)


def test_misses_with_a_steady_fleet_below_its_cap_are_too_little_headroom() -> None:
    causes = classify_misses([row(4, 4, 30.0), row(4, 4, 0.0), row(6, 2, 10.0)], max_replicas=10)
    assert (causes.headroom, causes.lead_time, causes.cap) == (30.0, 10.0, 0.0)
    assert causes.likely == HEADROOM
    verdict = slo_verdict(run([row(4, 4, 30.0), row(6, 2, 10.0)]), max_replicas=10)
    assert verdict is not None
    assert verdict.startswith("BELOW the 99% SLO target (50.00%): likely too little "
                              "headroom/target")
    assert "75% of the missed requests" in verdict


def test_misses_while_replicas_start_are_lead_time() -> None:
    # the 40 -> 1 cliff: one tick at 1 of 1, then 1 ready while 40 are wanted
    rows = [row(1, 1, 5.0)] + [row(40, 1, 7.0)] * 9 + [row(40, 40, 0.0)]
    causes = classify_misses(rows, max_replicas=42)
    assert causes.lead_time == 63.0 and causes.headroom == 5.0
    assert causes.likely == LEAD_TIME
    verdict = slo_verdict(run(rows), max_replicas=42)
    assert verdict is not None and "likely lead time" in verdict
    assert "93% of the missed requests came while replicas were starting or pending" in verdict


def test_misses_with_the_fleet_asking_for_its_cap_are_cap_reached() -> None:
    rows = [row(10, 10, 50.0), row(10, 7, 20.0), row(8, 8, 5.0)]
    causes = classify_misses(rows, max_replicas=10)
    assert (causes.cap, causes.lead_time, causes.headroom) == (70.0, 0.0, 5.0)
    assert causes.likely == CAP
    verdict = slo_verdict(run(rows), max_replicas=10)
    assert verdict is not None and "likely the replica cap (10) reached" in verdict
    assert "--max-replicas" in verdict


def test_without_a_cap_nothing_is_blamed_on_it() -> None:
    causes = classify_misses([row(10, 10, 50.0)], max_replicas=None)
    assert (causes.cap, causes.headroom) == (0.0, 50.0)
    verdict = slo_verdict(run([row(10, 10, 50.0)]), max_replicas=None)
    assert verdict is not None and "the fleet was not starting replicas" in verdict


def test_a_run_meeting_its_target_has_no_verdict() -> None:
    assert slo_verdict(run([row(4, 4, 1.0)], slo=0.995), max_replicas=10) is None


def test_a_miss_with_no_recorded_misses_says_the_cause_is_unknown() -> None:
    assert classify_misses([row(4, 4, 0.0)], max_replicas=10).likely is None
    verdict = slo_verdict(run([row(4, 4, 0.0)], slo=0.2), max_replicas=10)
    assert verdict == "BELOW the 99% SLO target (20.00%): no decision interval recorded a miss"


def test_an_unknown_attainment_is_not_called_below_target() -> None:
    assert slo_verdict(run([], slo=math.nan), max_replicas=10) is None
