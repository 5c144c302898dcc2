"""The emulated HPA against the Kubernetes documentation's worked examples, and KEDA's 0 <-> 1.

Examples are from the "Horizontal Pod Autoscaling" page: "Algorithm details" (ratio 2.0
doubles, 0.5 halves, 10% tolerance), "Scaling policies" (80 replicas, Pods 4 / Percent 10 per
60 s), "Stabilization window" and "Default Behavior" (4 pods or 100% every 15 s; 300 s window).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from scaler.sim.hpa import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    SCALEDOBJECT_BEHAVIOR,
    HorizontalPodAutoscaler,
    HpaBehavior,
    KedaActivation,
    ScalingPolicy,
    ScalingRules,
    Tolerances,
    behavior_from_spec,
    external_average_value_replicas,
    with_tolerance,
)

SYNC = 15.0
NO_DOWN_WINDOW = HpaBehavior(scale_down=ScalingRules(0.0, DEFAULT_SCALE_DOWN.policies))


def hpa(min_replicas: int = 1, max_replicas: int = 100,
        behavior: HpaBehavior | None = None) -> HorizontalPodAutoscaler:
    if behavior is None:
        return HorizontalPodAutoscaler(min_replicas=min_replicas, max_replicas=max_replicas)
    return HorizontalPodAutoscaler(min_replicas=min_replicas, max_replicas=max_replicas,
                                   behavior=behavior)


def run(h: HorizontalPodAutoscaler, start: int, needed: Sequence[float],
        target: float = 1.0) -> list[int]:
    """One sync every 15 s from t=0; ``needed[k]`` is the metric at sync k. Counts after each."""
    current, counts = start, []
    for k, metric in enumerate(needed):
        current = h.desired(k * SYNC, current_replicas=current, metric_value=metric * target,
                            target_value=target)
        counts.append(current)
    return counts


def changes(counts: list[int], start: int) -> list[tuple[float, int]]:
    """(time, new count) at each sync that changed the count."""
    out, previous = [], start
    for k, count in enumerate(counts):
        if count != previous:
            out.append((k * SYNC, count))
        previous = count
    return out


# --------------------------------------------------------------------------- replica calculator


def test_ratio_two_doubles() -> None:
    # docs: current 200m vs desired 100m -> ratio 2.0 -> replicas doubled
    assert hpa().desired(0.0, current_replicas=4, metric_value=800.0, target_value=100.0) == 8


def test_ratio_half_halves_once_nothing_higher_is_in_the_window() -> None:
    assert hpa(behavior=NO_DOWN_WINDOW).desired(
        0.0, current_replicas=8, metric_value=400.0, target_value=100.0) == 4


@pytest.mark.parametrize(("metric", "expected"), [
    (110.0, 10),  # ratio 1.1: on the bound, within tolerance (isWithin includes it)
    (90.0, 10),  # ratio 0.9: on the other bound
    (105.0, 10),
    (111.0, 12),  # ratio 1.11: ceil(11.1)
])
def test_tolerance_band_is_ten_percent_inclusive(metric: float, expected: int) -> None:
    h = hpa(behavior=NO_DOWN_WINDOW)
    assert h.desired(0.0, current_replicas=10, metric_value=metric, target_value=10.0) == expected


def test_proposal_is_ceil_of_total_over_target_on_milli_quantities() -> None:
    assert external_average_value_replicas(3, 11.0, 5.0, 0.1) == 3  # ratio 0.733 -> ceil(2.2)
    assert external_average_value_replicas(1, 0.0009, 1.0, 0.1) == 0  # truncated to 0m
    assert external_average_value_replicas(2, 2.0, 1.0, 0.1) == 2
    assert external_average_value_replicas(2, 2.0, 0.0015, 0.1) == 2000  # target 1m


def test_custom_tolerance() -> None:
    h = hpa(behavior=HpaBehavior(tolerance=0.0))
    assert h.desired(0.0, current_replicas=10, metric_value=10.5, target_value=1.0) == 11


def test_each_direction_has_its_own_tolerance_where_its_rules_set_one() -> None:
    """KEP-4951: ``behavior.scaleUp.tolerance: 0`` with the cluster's 10% for scale-down."""
    exact_up = HpaBehavior(scale_up=ScalingRules(0.0, DEFAULT_SCALE_UP.policies, tolerance=0.0),
                           scale_down=NO_DOWN_WINDOW.scale_down)
    assert exact_up.tolerances == Tolerances(down=0.1, up=0.0)
    assert hpa(behavior=exact_up).desired(
        0.0, current_replicas=20, metric_value=21.0, target_value=1.0) == 21
    assert hpa(behavior=exact_up).desired(
        0.0, current_replicas=20, metric_value=19.0, target_value=1.0) == 20
    assert hpa(behavior=NO_DOWN_WINDOW).desired(
        0.0, current_replicas=20, metric_value=21.0, target_value=1.0) == 20


def test_the_shipped_scaledobject_carries_a_plan_out_exactly_and_at_once() -> None:
    """20 running, the scaler answers 21, then 19: the default HPA leaves both at 20 (within
    10%); the shipped ScaledObject's HPA sets each at the next sync."""
    shipped, default = hpa(behavior=SCALEDOBJECT_BEHAVIOR), hpa()
    assert shipped.desired(0.0, current_replicas=20, metric_value=21.0, target_value=1.0) == 21
    assert shipped.desired(SYNC, current_replicas=21, metric_value=19.0, target_value=1.0) == 19
    assert default.desired(0.0, current_replicas=20, metric_value=21.0, target_value=1.0) == 20
    assert default.desired(SYNC, current_replicas=20, metric_value=19.0, target_value=1.0) == 20


def test_a_cluster_without_configurable_tolerance_is_the_shipped_behaviour_at_its_flag() -> None:
    lenient = with_tolerance(SCALEDOBJECT_BEHAVIOR, 0.1)
    assert lenient.tolerances == Tolerances(0.1, 0.1)
    assert (lenient.scale_up.policies, lenient.scale_down.stabilization_s) == (
        SCALEDOBJECT_BEHAVIOR.scale_up.policies, 0.0)
    assert hpa(behavior=lenient).desired(
        0.0, current_replicas=20, metric_value=21.0, target_value=1.0) == 20


def test_behavior_spec_gets_the_apis_defaults_for_what_it_leaves_out() -> None:
    assert behavior_from_spec({}) == HpaBehavior()
    spec = {"scaleDown": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}],
                          "tolerance": "50m"},
            "scaleUp": {"stabilizationWindowSeconds": 30, "selectPolicy": "Min"}}
    behavior = behavior_from_spec(spec)
    assert behavior.scale_down == ScalingRules(
        300.0, (ScalingPolicy("Pods", 2, 60.0),), "Max", tolerance=0.05)
    assert behavior.scale_up == ScalingRules(30.0, DEFAULT_SCALE_UP.policies, "Min")
    assert behavior.tolerances == Tolerances(down=0.05, up=0.1)
    with pytest.raises(ValueError) as err:
        behavior_from_spec({"scaleUp": {"tolerance": "ten percent"}})
    assert str(err.value) == ("behavior.scaleUp.tolerance must be a quantity such as 0.05 or "
                              "50m, got 'ten percent'")


# --------------------------------------------------------------------------- default behavior


def test_default_scale_up_adds_four_or_doubles_every_15_s() -> None:
    counts = run(hpa(max_replicas=100), 1, [100.0] * 8)
    # 1 -> max(1+4, 2*1) -> max(5+4, 2*5) -> 20 -> 40 -> 80 -> maxReplicas
    assert counts == [5, 10, 20, 40, 80, 100, 100, 100]


def test_scale_up_waits_for_the_period_between_syncs() -> None:
    h = hpa()
    assert h.desired(0.0, current_replicas=1, metric_value=50.0, target_value=1.0) == 5
    # 5 s later the +4 of t=0 is still inside the 15 s period: nothing more allowed
    assert h.desired(5.0, current_replicas=5, metric_value=50.0, target_value=1.0) == 5
    # exactly one period later the event no longer counts (Go's strict After)
    assert h.desired(15.0, current_replicas=5, metric_value=50.0, target_value=1.0) == 10


def test_default_scale_down_waits_300_s_for_the_initial_recommendation() -> None:
    counts = run(hpa(), 8, [4.0] * 22)
    # the first sync records 8 at t=0; at t=300 it is exactly one window old and drops out
    assert changes(counts, 8) == [(300.0, 4)]


def test_default_scale_down_may_remove_all_but_min_at_once() -> None:
    counts = run(hpa(min_replicas=2), 50, [0.0] * 22)
    assert changes(counts, 50) == [(300.0, 2)]


# --------------------------------------------------------------------------- scaling policies


def test_docs_scale_down_example_percent_10_or_pods_4_per_minute() -> None:
    policies = (ScalingPolicy("Pods", 4, 60.0), ScalingPolicy("Percent", 10, 60.0))
    h = hpa(behavior=HpaBehavior(scale_down=ScalingRules(0.0, policies)))
    counts = run(h, 80, [10.0] * 60)
    assert changes(counts, 80) == [
        (0.0, 72),  # 10% of 80 = 8 > 4
        (60.0, 64),  # 72: 7.2 rounded up to 8 (int(72 * 0.9) = 64)
        (120.0, 57),
        (180.0, 51),
        (240.0, 45),
        (300.0, 40),
        (360.0, 36),  # from 40 both allow 4
        (420.0, 32),  # below 40 the Pods policy (4 a minute) allows more than 10%
        (480.0, 28),
        (540.0, 24),
        (600.0, 20),
        (660.0, 16),
        (720.0, 12),
        (780.0, 10),  # the target
    ]
    assert counts[1:4] == [72, 72, 72]  # one step per 60 s period, not per 15 s sync


def test_select_policy_min_takes_the_smallest_change() -> None:
    down = ScalingRules(0.0, (ScalingPolicy("Percent", 10, 60.0), ScalingPolicy("Pods", 5, 60.0)),
                        select="Min")
    up = ScalingRules(0.0, DEFAULT_SCALE_UP.policies, select="Min")
    h = hpa(behavior=HpaBehavior(scale_up=up, scale_down=down))
    # docs: "no more than 5 Pods are removed per minute"; 10% of 100 would be 10
    assert h.desired(0.0, current_replicas=100, metric_value=1.0, target_value=1.0) == 95
    h = hpa(behavior=HpaBehavior(scale_up=up, scale_down=down))
    assert h.desired(0.0, current_replicas=20, metric_value=1.0, target_value=1.0) == 18
    h = hpa(behavior=HpaBehavior(scale_up=up, scale_down=down))
    assert h.desired(0.0, current_replicas=10, metric_value=50.0, target_value=1.0) == 14


def test_select_policy_disabled_never_scales_that_way() -> None:
    no_down = HpaBehavior(scale_down=ScalingRules(0.0, DEFAULT_SCALE_DOWN.policies, "Disabled"))
    assert set(run(hpa(behavior=no_down), 10, [0.0] * 40)) == {10}
    no_up = HpaBehavior(scale_up=ScalingRules(0.0, DEFAULT_SCALE_UP.policies, "Disabled"))
    assert set(run(hpa(behavior=no_up), 3, [50.0] * 10)) == {3}


def test_period_start_adds_back_recent_scale_downs() -> None:
    # calculateScaleUpLimitWithScalingRules: start = current - added + removed in the period
    up = ScalingRules(0.0, (ScalingPolicy("Pods", 2, 60.0),))
    h = hpa(behavior=HpaBehavior(scale_up=up, scale_down=NO_DOWN_WINDOW.scale_down))
    assert h.desired(0.0, current_replicas=10, metric_value=4.0, target_value=1.0) == 4
    # start of the 60 s period = 4 + 6 removed = 10, so up to 12 is allowed at once
    assert h.desired(15.0, current_replicas=4, metric_value=20.0, target_value=1.0) == 12


# --------------------------------------------------------------------------- stabilization


def test_dip_shorter_than_the_down_window_does_not_scale_down() -> None:
    needed = [10.0] * 20 + [2.0] * 8 + [10.0] * 40  # a 2-minute dip
    assert set(run(hpa(), 10, needed)) == {10}


def test_highest_recommendation_in_the_down_window_wins() -> None:
    needed = [10.0] + [6.0] * 7 + [2.0] * 40  # 10 at t=0, 6 for t=15..105, then 2
    counts = run(hpa(), 10, needed)
    # at t=300 the 10 from t=0 leaves the window and 6 is the highest left; at t=405 the
    # last 6 (t=105) leaves it too
    assert changes(counts, 10) == [(300.0, 6), (405.0, 2)]


def test_scale_up_window_takes_the_lowest_recommendation() -> None:
    up = ScalingRules(60.0, DEFAULT_SCALE_UP.policies)
    counts = run(hpa(behavior=HpaBehavior(scale_up=up)), 2, [10.0] + [2.0] * 10)
    assert set(counts) == {2}  # one high sync is not enough
    counts = run(hpa(behavior=HpaBehavior(scale_up=up)), 2, [10.0] * 7)
    # from t=60 every recommendation in (0, 60] is 10: up by the default policies
    assert changes(counts, 2) == [(60.0, 6), (75.0, 10)]


# --------------------------------------------------------------------------- bounds and zero


def test_min_and_max_replicas_bound_the_result() -> None:
    assert run(hpa(max_replicas=8), 1, [1000.0] * 4) == [5, 8, 8, 8]
    counts = run(hpa(min_replicas=3, behavior=NO_DOWN_WINDOW), 10, [0.0] * 3)
    assert counts == [3, 3, 3]


def test_out_of_bounds_count_is_set_to_the_bound_at_once() -> None:
    disabled = ScalingRules(0.0, DEFAULT_SCALE_UP.policies, "Disabled")
    h = hpa(min_replicas=2, max_replicas=6,
            behavior=HpaBehavior(scale_up=disabled, scale_down=disabled))
    assert h.desired(0.0, current_replicas=9, metric_value=9.0, target_value=1.0) == 6
    assert h.desired(15.0, current_replicas=1, metric_value=1.0, target_value=1.0) == 2


def test_zero_replicas_is_left_to_keda() -> None:
    h = hpa()
    assert h.desired(0.0, current_replicas=0, metric_value=50.0, target_value=1.0) == 0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"current_replicas": -1, "metric_value": 1.0, "target_value": 1.0},
     "current_replicas must be >= 0, got -1"),
    ({"current_replicas": 1, "metric_value": float("nan"), "target_value": 1.0},
     "metric_value must be finite and >= 0, got nan"),
    ({"current_replicas": 1, "metric_value": -2.0, "target_value": 1.0},
     "metric_value must be finite and >= 0, got -2.0"),
    ({"current_replicas": 1, "metric_value": 1.0, "target_value": 0.0},
     "target_value must be finite and >= 0.001, got 0.0"),
])
def test_desired_rejects_bad_inputs(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as err:
        hpa().desired(0.0, current_replicas=int(kwargs["current_replicas"]),
                      metric_value=kwargs["metric_value"], target_value=kwargs["target_value"])
    assert str(err.value) == message


def test_configuration_errors_name_the_value() -> None:
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: hpa(min_replicas=0), "min_replicas must be >= 1 (0 <-> 1 is KEDA's job), got 0"),
        (lambda: hpa(min_replicas=5, max_replicas=4),
         "max_replicas (4) must be >= min_replicas (5)"),
        (lambda: ScalingPolicy("Pods", 0, 15.0), "scaling policy value must be > 0, got 0"),
        (lambda: ScalingPolicy("Pods", 1, 0.0),
         "scaling policy period_s must be in (0, 1800], got 0.0"),
        (lambda: ScalingPolicy("Replicas", 1, 15.0),  # type: ignore[arg-type]
         "scaling policy kind must be 'Pods' or 'Percent', got 'Replicas'"),
        (lambda: ScalingRules(-1.0, DEFAULT_SCALE_UP.policies),
         "stabilization_s must be in [0, 3600], got -1.0"),
        (lambda: ScalingRules(0.0, ()), "scaling rules need at least one policy"),
        (lambda: ScalingRules(0.0, DEFAULT_SCALE_UP.policies, "Any"),  # type: ignore[arg-type]
         "select must be 'Max', 'Min' or 'Disabled', got 'Any'"),
        (lambda: HpaBehavior(tolerance=-0.1), "tolerance must be >= 0, got -0.1"),
        (lambda: ScalingRules(0.0, DEFAULT_SCALE_UP.policies, tolerance=-0.1),
         "tolerance must be >= 0, got -0.1"),
        (lambda: HpaBehavior(sync_period_s=0.0), "sync_period_s must be > 0, got 0.0"),
    ]
    for make, message in cases:
        with pytest.raises(ValueError) as err:
            make()
        assert str(err.value) == message


def test_defaults_match_the_documented_default_behavior() -> None:
    behavior = HpaBehavior()
    assert behavior.scale_up == ScalingRules(
        0.0, (ScalingPolicy("Pods", 4, 15.0), ScalingPolicy("Percent", 100, 15.0)), "Max")
    assert behavior.scale_down == ScalingRules(300.0, (ScalingPolicy("Percent", 100, 15.0),))
    assert (behavior.tolerance, behavior.sync_period_s) == (0.1, 15.0)


# --------------------------------------------------------------------------- KEDA activation


def idle(keda: KedaActivation, now_s: float, *, current: int, hpa_replicas: int) -> int:
    """A poll with no active trigger and ``minReplicaCount: 0``."""
    return keda.replicas(now_s, active=False, hpa_replicas=hpa_replicas, current=current,
                         min_replica_count=0)


def test_activation_from_zero_goes_to_max_of_one_and_min() -> None:
    assert KedaActivation().replicas(0.0, active=True, hpa_replicas=0, current=0,
                                     min_replica_count=0) == 1
    assert KedaActivation().replicas(0.0, active=True, hpa_replicas=0, current=0,
                                     min_replica_count=3) == 3


def test_active_with_replicas_defers_to_the_hpa() -> None:
    assert KedaActivation().replicas(0.0, active=True, hpa_replicas=7, current=5,
                                     min_replica_count=0) == 7


def test_scale_to_zero_after_the_cooldown_since_last_active() -> None:
    keda = KedaActivation()
    assert keda.replicas(0.0, active=True, hpa_replicas=2, current=2, min_replica_count=0) == 2
    assert idle(keda, 300.0, current=2, hpa_replicas=1) == 1  # not yet strictly past
    assert idle(keda, 301.0, current=2, hpa_replicas=1) == 0
    assert keda.replicas(400.0, active=False, hpa_replicas=1, current=2, min_replica_count=0,
                         cooldown_s=120.0) == 0


def test_no_scale_to_zero_with_a_minimum() -> None:
    keda = KedaActivation()
    assert keda.replicas(0.0, active=True, hpa_replicas=4, current=4, min_replica_count=2) == 4
    assert keda.replicas(1000.0, active=False, hpa_replicas=3, current=4,
                         min_replica_count=2) == 3
    # inactive below the minimum (e.g. at 0): raised to it
    assert keda.replicas(1015.0, active=False, hpa_replicas=0, current=0,
                         min_replica_count=2) == 2


def test_inactive_at_zero_stays_at_zero() -> None:
    assert KedaActivation().replicas(0.0, active=False, hpa_replicas=0, current=0,
                                     min_replica_count=0) == 0


def test_never_active_counts_from_creation_and_initial_cooldown() -> None:
    keda = KedaActivation()
    assert idle(keda, 0.0, current=3, hpa_replicas=3) == 3  # created just now
    assert idle(keda, 15.0, current=3, hpa_replicas=3) == 0
    keda = KedaActivation(initial_cooldown_s=60.0)
    assert idle(keda, 0.0, current=3, hpa_replicas=3) == 3
    assert idle(keda, 60.0, current=3, hpa_replicas=3) == 3
    assert idle(keda, 75.0, current=3, hpa_replicas=3) == 0


def test_keda_and_hpa_together_wake_scale_and_sleep() -> None:
    h, keda = hpa(max_replicas=20), KedaActivation()
    current, counts = 0, []
    needed = [0.0] * 2 + [12.0] * 6 + [0.0] * 50
    for k, metric in enumerate(needed):
        now = k * SYNC
        proposal = h.desired(now, current_replicas=current, metric_value=metric,
                             target_value=1.0)
        current = keda.replicas(now, active=metric > 0, hpa_replicas=proposal, current=current,
                                min_replica_count=0)
        counts.append(current)
    assert counts[:2] == [0, 0]
    assert counts[2:5] == [1, 5, 10]  # KEDA wakes it, then the HPA's 15 s steps
    assert max(counts) == 12
    # last active at t=105; HPA holds 12 for its 300 s window, KEDA zeroes it after 300 s
    assert changes(counts, 0)[-1] == (420.0, 0)
