"""The Kubernetes HorizontalPodAutoscaler and KEDA's 0 <-> 1 step, emulated for the replay.

Why emulate rather than approximate: the scaler does not set replica counts itself. It answers
KEDA with a metric, KEDA feeds that metric to an HPA, and the HPA's tolerance, stabilization
windows and rate policies decide what the Deployment is actually asked for. A what-if replay
that skipped them would credit a policy with reactions the cluster never makes (an immediate
scale-down, a jump from 1 to 40 replicas in one sync). So this module follows the controller's
code path for one HPA with one External metric of target type ``AverageValue`` (KEDA's default)
and a ``behavior`` section, step by step. It is pure: no clock, no I/O; the caller passes the
time of each sync and calls :meth:`HorizontalPodAutoscaler.desired` every ``sync_period_s``.

Sources relied on (Kubernetes ``pkg/controller/podautoscaler``):

* ``replica_calculator.go``, ``GetExternalPerPodMetricReplicas`` and ``Tolerances.isWithin``
  (v1.33+): ``ratio = usage / (target * statusReplicas)``; within
  ``1 - tolerance <= ratio <= 1 + tolerance`` (bounds included) the proposal is the current
  count, else ``ceil(usage / target)`` (before v1.33 the test was ``|1 - ratio| > tolerance``,
  which differs only exactly on a bound). Usage and target are milli-quantities: KEDA sends
  ``int64(value * 1000)`` (``GenerateMetricInMili`` in ``pkg/scalers``; newer KEDA parses the
  decimal string instead, the same for values with at most 3 decimals), so both are truncated
  to 0.001 here too, and the float arithmetic is done in the controller's order.
* ``horizontal.go``, ``reconcileAutoscaler``: the first sync records the current count as a
  recommendation (``recordInitialRecommendation``); a count above ``maxReplicas`` or below
  ``minReplicas`` is set to the bound at once, without stabilization or rate limits; 0 replicas
  with ``minReplicas > 0`` means "scaling disabled" and the HPA does nothing.
* ``stabilizeRecommendationWithBehaviors``: recommendations are kept with their times; the
  up-limit is the *minimum* recommendation within the scale-up window, the down-limit the
  *maximum* within the scale-down window, both including this sync's proposal; the current count
  is brought within [up-limit, down-limit]. The proposal (not the stabilized value) is stored.
* ``convertDesiredReplicasWithBehaviorRate``, ``calculateScaleUpLimitWithScalingRules``,
  ``calculateScaleDownLimitWithBehaviors``, ``getReplicasChangePerPeriod``: each policy looks
  back ``periodSeconds`` at this HPA's own scale events; the replica count at the period's start
  is ``current - added + removed``; ``Pods`` allows ``start +/- value``, ``Percent`` allows
  ``ceil(start * (1 + v/100))`` up and ``int(start * (1 - v/100))`` down (truncated); selectPolicy
  ``Max`` takes the policy allowing the largest change, ``Min`` the smallest, ``Disabled`` none.
  Then ``maxReplicas`` / ``minReplicas`` bound the result.
* ``storeScaleEvent`` / ``markScaleEventsOutdated``: a new event replaces the last one older than
  its direction's longest policy period, else it is appended (kept as is, since the scale-up limit
  also reads scale-down events over the scale-up periods).
* Defaults from the "Horizontal Pod Autoscaling" page, "Default Behavior", and
  ``pkg/apis/autoscaling/v2/defaults.go``: scale up 0 s window, Pods 4 and Percent 100 per 15 s,
  Max; scale down 300 s window (``--horizontal-pod-autoscaler-downscale-stabilization``),
  Percent 100 per 15 s; tolerance 0.1; sync period 15 s.

Time comparisons follow Go's strict ``After`` / ``Before``: a recommendation or event exactly one
window old no longer counts. The real controller re-queues an HPA a little *more* than one sync
period after the last (processing time), so on a sync grid the edge sample is always just
outside; strict comparisons on exact times give the same answer.

Not emulated: pods and their readiness (the External ``AverageValue`` path never looks at pods,
so the missing-pod and unready-pod corrections of the Resource and Pods metric paths do not
apply); several metrics per HPA (the controller takes the largest proposal over metrics: pass
the trigger whose ``ceil(value / target)`` is largest); the ``behavior: nil`` path (a
ScaledObject without ``advanced.horizontalPodAutoscalerConfig.behavior`` gets an HPA without
one, and the controller's older ``normalizeDesiredReplicas`` then allows ``max(2 x current, 4)``
per sync instead of ``+4 or x2``, e.g. 1 -> 4 rather than 1 -> 5, and keeps a downscale-window
sample that is exactly one window old; set ``behavior`` to get what is emulated here);
metric fetch errors;
``spec.replicas`` differing from ``status.replicas`` (one ``current_replicas`` stands for both,
true once the ReplicaSet has created its pods, even if they are Pending). Scale to and from zero
is not the HPA's job: it does nothing at 0 replicas
and KEDA does 0 <-> 1, emulated by :class:`KedaActivation` (KEDA's
``pkg/scaling/executor/scale_scaledobjects.go``). KEDA's HPA has
``minReplicas = max(1, minReplicaCount)``, so ``min_replicas`` must be at least 1 here.

``behavior`` itself (policies, rules, tolerances, the defaults, the shipped ScaledObject's,
and reading one from a manifest) is ``scaler.sim.hpa_behavior``; its names are re-exported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from scaler.sim.hpa_behavior import (
    DEFAULT_BEHAVIOR,
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    SCALEDOBJECT_BEHAVIOR,
    HpaBehavior,
    ScalingPolicy,
    ScalingRules,
    Tolerances,
    behavior_from_spec,
    with_tolerance,
)

__all__ = [
    "DEFAULT_BEHAVIOR",
    "DEFAULT_SCALE_DOWN",
    "DEFAULT_SCALE_UP",
    "SCALEDOBJECT_BEHAVIOR",
    "HorizontalPodAutoscaler",
    "HpaBehavior",
    "KedaActivation",
    "ScalingPolicy",
    "ScalingRules",
    "Tolerances",
    "behavior_from_spec",
    "external_average_value_replicas",
    "with_tolerance",
]

_MAX_INT32 = 2**31 - 1


class _Recommendation(NamedTuple):
    replicas: int
    time_s: float


@dataclass
class _ScaleEvent:
    change: int  # replicas added (in the up list) or removed (in the down list), > 0
    time_s: float
    outdated: bool = False


class HorizontalPodAutoscaler:
    """One HPA with one External ``AverageValue`` metric; :meth:`desired` is one sync."""

    def __init__(self, *, min_replicas: int, max_replicas: int,
                 behavior: HpaBehavior = DEFAULT_BEHAVIOR) -> None:
        if min_replicas < 1:
            raise ValueError(
                f"min_replicas must be >= 1 (0 <-> 1 is KEDA's job), got {min_replicas}")
        if max_replicas < min_replicas:
            raise ValueError(
                f"max_replicas ({max_replicas}) must be >= min_replicas ({min_replicas})")
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.behavior = behavior
        self._recommendations: list[_Recommendation] | None = None
        self._up_events: list[_ScaleEvent] = []
        self._down_events: list[_ScaleEvent] = []

    def desired(self, now_s: float, *, current_replicas: int, metric_value: float,
                target_value: float) -> int:
        """The replica count this sync sets (``current_replicas`` when it leaves it alone).

        ``metric_value`` is the External metric as KEDA reports it (the total, not per pod);
        ``target_value`` is the per-replica ``averageValue`` target.
        """
        _check_inputs(current_replicas, metric_value, target_value)
        if self._recommendations is None:
            self._recommendations = [_Recommendation(current_replicas, now_s)]
        if current_replicas == 0:
            return 0  # "scaling is disabled since the replica count of the target is zero"
        if current_replicas > self.max_replicas:
            desired = self.max_replicas
        elif current_replicas < self.min_replicas:
            desired = self.min_replicas
        else:
            proposal = external_average_value_replicas(
                current_replicas, metric_value, target_value, self.behavior.tolerances)
            stabilized = self._stabilize(now_s, current_replicas, proposal)
            desired = self._rate_limit(now_s, current_replicas, stabilized)
        if desired != current_replicas:
            self._store_event(now_s, current_replicas, desired)
        return desired

    def _stabilize(self, now_s: float, current: int, proposal: int) -> int:
        """``stabilizeRecommendationWithBehaviors``: bound ``current`` by the windows' extremes."""
        recs = self._recommendations
        assert recs is not None
        up_cutoff = now_s - self.behavior.scale_up.stabilization_s
        down_cutoff = now_s - self.behavior.scale_down.stabilization_s
        up_limit = down_limit = proposal
        old_index: int | None = None
        for i, rec in enumerate(recs):
            if rec.time_s > up_cutoff:
                up_limit = min(up_limit, rec.replicas)
            if rec.time_s > down_cutoff:
                down_limit = max(down_limit, rec.replicas)
            if rec.time_s < up_cutoff and rec.time_s < down_cutoff:
                old_index = i
        new = _Recommendation(proposal, now_s)
        if old_index is None:
            recs.append(new)
        else:
            recs[old_index] = new
        return min(max(current, up_limit), down_limit)

    def _rate_limit(self, now_s: float, current: int, desired: int) -> int:
        """``convertDesiredReplicasWithBehaviorRate``: policies, then min/max replicas."""
        if desired > current:
            limit = _scale_up_limit(current, self._up_events, self._down_events,
                                   self.behavior.scale_up, now_s)
            return min(desired, self.max_replicas, max(limit, current))
        if desired < current:
            limit = _scale_down_limit(current, self._up_events, self._down_events,
                                     self.behavior.scale_down, now_s)
            return max(desired, self.min_replicas, min(limit, current))
        return desired

    def _store_event(self, now_s: float, previous: int, new: int) -> None:
        """``storeScaleEvent``: reuse the last outdated slot of that direction, else append."""
        if new > previous:
            events, rules = self._up_events, self.behavior.scale_up
        else:
            events, rules = self._down_events, self.behavior.scale_down
        cutoff = now_s - rules.longest_period_s
        old_index: int | None = None
        for i, event in enumerate(events):
            if event.time_s < cutoff:
                event.outdated = True
            if event.outdated:
                old_index = i
        event = _ScaleEvent(abs(new - previous), now_s)
        if old_index is None:
            events.append(event)
        else:
            events[old_index] = event


def _check_inputs(current_replicas: int, metric_value: float, target_value: float) -> None:
    if current_replicas < 0:
        raise ValueError(f"current_replicas must be >= 0, got {current_replicas}")
    if not (math.isfinite(metric_value) and metric_value >= 0):
        raise ValueError(f"metric_value must be finite and >= 0, got {metric_value}")
    if not (math.isfinite(target_value) and target_value >= 0.001):
        raise ValueError(f"target_value must be finite and >= 0.001, got {target_value}")


def external_average_value_replicas(current_replicas: int, metric_value: float,
                                    target_value: float, tolerance: float | Tolerances) -> int:
    """``GetExternalPerPodMetricReplicas`` on KEDA's milli-quantities (``current_replicas > 0``);
    one ``tolerance`` number stands for both directions."""
    down, up = (tolerance if isinstance(tolerance, Tolerances)
                else Tolerances(tolerance, tolerance))
    usage_m = float(int(metric_value * 1000))
    target_m = float(int(target_value * 1000))
    ratio = usage_m / (target_m * float(current_replicas))
    if 1.0 - down <= ratio <= 1.0 + up:
        return current_replicas
    return min(math.ceil(usage_m / target_m), _MAX_INT32)


def _replicas_change_in_period(period_s: float, events: list[_ScaleEvent], now_s: float) -> int:
    """``getReplicasChangePerPeriod``: replicas changed by events after ``now - period``."""
    cutoff = now_s - period_s
    return sum(event.change for event in events if event.time_s > cutoff)


def _period_start(current: int, up_events: list[_ScaleEvent], down_events: list[_ScaleEvent],
                  period_s: float, now_s: float) -> int:
    added = _replicas_change_in_period(period_s, up_events, now_s)
    removed = _replicas_change_in_period(period_s, down_events, now_s)
    return current - added + removed


def _scale_up_limit(current: int, up_events: list[_ScaleEvent], down_events: list[_ScaleEvent],
                   rules: ScalingRules, now_s: float) -> int:
    """``calculateScaleUpLimitWithScalingRules``: the most replicas the policies allow now."""
    if rules.select == "Disabled":
        return current
    proposals = []
    for policy in rules.policies:
        start = _period_start(current, up_events, down_events, policy.period_s, now_s)
        if policy.kind == "Pods":
            proposals.append(start + policy.value)
        else:
            proposals.append(math.ceil(float(start) * (1 + policy.value / 100)))
    return max(proposals) if rules.select == "Max" else min(proposals)


def _scale_down_limit(current: int, up_events: list[_ScaleEvent], down_events: list[_ScaleEvent],
                     rules: ScalingRules, now_s: float) -> int:
    """``calculateScaleDownLimitWithBehaviors``: the fewest replicas the policies allow now."""
    if rules.select == "Disabled":
        return current
    proposals = []
    for policy in rules.policies:
        start = _period_start(current, up_events, down_events, policy.period_s, now_s)
        if policy.kind == "Pods":
            proposals.append(start - policy.value)
        else:
            proposals.append(int(float(start) * (1 - policy.value / 100)))
    return min(proposals) if rules.select == "Max" else max(proposals)


class KedaActivation:
    """KEDA's scale executor for one ScaledObject: 0 -> N on activity, N -> 0 after a cooldown.

    KEDA leaves 1..N to its HPA and only steps in at the edges (``RequestScale`` in
    ``pkg/scaling/executor/scale_scaledobjects.go``): active at 0 replicas scales to
    ``max(1, minReplicaCount)`` (``scaleFromZeroOrIdle``); inactive with replicas and
    ``minReplicaCount == 0`` scales to 0 once ``lastActiveTime + cooldownPeriod`` is strictly in
    the past (``scaleToZeroOrIdle``); inactive below ``minReplicaCount`` is raised to it. A
    ScaledObject never active yet counts from its creation plus ``initialCooldownPeriod``
    (default 0); its creation is taken as the first call. Not emulated: ``idleReplicaCount``,
    pause annotations, fallback on scaler errors.
    """

    def __init__(self, *, initial_cooldown_s: float = 0.0) -> None:
        if not initial_cooldown_s >= 0:
            raise ValueError(f"initial_cooldown_s must be >= 0, got {initial_cooldown_s}")
        self.initial_cooldown_s = initial_cooldown_s
        self._created_s: float | None = None
        self._last_active_s: float | None = None

    def replicas(self, now_s: float, *, active: bool, hpa_replicas: int, current: int,
                 min_replica_count: int, cooldown_s: float = 300.0) -> int:
        """The replica count after KEDA's poll at ``now_s`` (``hpa_replicas`` when it defers)."""
        if current < 0 or min_replica_count < 0:
            raise ValueError(
                f"current and min_replica_count must be >= 0, got {current} and "
                f"{min_replica_count}")
        if self._created_s is None:
            self._created_s = now_s
        if active:
            self._last_active_s = now_s
            return max(1, min_replica_count) if current == 0 else hpa_replicas
        if current > 0 and min_replica_count == 0:
            return 0 if self._cooled_down(now_s, cooldown_s) else hpa_replicas
        if current < min_replica_count:
            return min_replica_count
        return hpa_replicas if current > 0 else 0

    def _cooled_down(self, now_s: float, cooldown_s: float) -> bool:
        if self._last_active_s is None:
            assert self._created_s is not None
            return self._created_s + self.initial_cooldown_s < now_s
        return self._last_active_s + cooldown_s < now_s
