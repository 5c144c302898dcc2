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
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

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
_MAX_PERIOD_S = 1800.0  # API validation: periodSeconds in (0, 1800]
_MAX_WINDOW_S = 3600.0  # API validation: stabilizationWindowSeconds in [0, 3600]


@dataclass(frozen=True)
class ScalingPolicy:
    """One ``HPAScalingPolicy``: at most ``value`` pods or percent per ``period_s`` seconds."""

    kind: Literal["Pods", "Percent"]
    value: int
    period_s: float

    def __post_init__(self) -> None:
        if self.kind not in ("Pods", "Percent"):
            raise ValueError(f"scaling policy kind must be 'Pods' or 'Percent', got {self.kind!r}")
        if self.value <= 0:
            raise ValueError(f"scaling policy value must be > 0, got {self.value}")
        if not 0 < self.period_s <= _MAX_PERIOD_S:
            raise ValueError(f"scaling policy period_s must be in (0, 1800], got {self.period_s}")


@dataclass(frozen=True)
class ScalingRules:
    """One direction of ``behavior``: stabilization window, policies and how to pick one."""

    stabilization_s: float
    policies: tuple[ScalingPolicy, ...]
    select: Literal["Max", "Min", "Disabled"] = "Max"
    tolerance: float | None = None  # None: the cluster-wide --horizontal-pod-autoscaler-tolerance

    def __post_init__(self) -> None:
        if self.tolerance is not None and not self.tolerance >= 0:
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance}")
        if not 0 <= self.stabilization_s <= _MAX_WINDOW_S:
            raise ValueError(
                f"stabilization_s must be in [0, 3600], got {self.stabilization_s}")
        if not self.policies:
            raise ValueError("scaling rules need at least one policy")
        if self.select not in ("Max", "Min", "Disabled"):
            raise ValueError(
                f"select must be 'Max', 'Min' or 'Disabled', got {self.select!r}")

    @property
    def longest_period_s(self) -> float:
        return max(policy.period_s for policy in self.policies)


DEFAULT_SCALE_UP = ScalingRules(
    stabilization_s=0.0,
    policies=(ScalingPolicy("Pods", 4, 15.0), ScalingPolicy("Percent", 100, 15.0)),
    select="Max",
)
DEFAULT_SCALE_DOWN = ScalingRules(
    stabilization_s=300.0,
    policies=(ScalingPolicy("Percent", 100, 15.0),),
    select="Max",
)


@dataclass(frozen=True)
class HpaBehavior:
    """``spec.behavior`` plus the two controller flags that shape it."""

    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN
    tolerance: float = 0.1  # --horizontal-pod-autoscaler-tolerance
    sync_period_s: float = 15.0  # --horizontal-pod-autoscaler-sync-period: the caller's cadence

    def __post_init__(self) -> None:
        if not self.tolerance >= 0:
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance}")
        if not self.sync_period_s > 0:
            raise ValueError(f"sync_period_s must be > 0, got {self.sync_period_s}")

    @property
    def tolerances(self) -> Tolerances:
        """Each direction's own tolerance where its rules set one, else the cluster-wide one."""
        down, up = self.scale_down.tolerance, self.scale_up.tolerance
        return Tolerances(self.tolerance if down is None else down,
                          self.tolerance if up is None else up)


class Tolerances(NamedTuple):
    """No change while ``1 - down <= usage ratio <= 1 + up`` (``Tolerances.isWithin``)."""

    down: float
    up: float


DEFAULT_BEHAVIOR = HpaBehavior()

# What deploy/examples/scaledobject-vllm.yaml asks KEDA for (a test reads the file): the
# scaler's answer carried out at once (no stabilization: the scaler stabilises itself) and
# exactly (tolerance 0: a plan of 21 over 20 running is not left at 20), at most half the
# fleet removed or the larger of doubling and 8 pods added per 15 s.
SCALEDOBJECT_BEHAVIOR = HpaBehavior(
    scale_up=ScalingRules(0.0, (ScalingPolicy("Percent", 100, 15.0),
                                ScalingPolicy("Pods", 8, 15.0)), "Max", tolerance=0.0),
    scale_down=ScalingRules(0.0, (ScalingPolicy("Percent", 50, 15.0),), "Max", tolerance=0.0),
)


def with_tolerance(behavior: HpaBehavior, tolerance: float) -> HpaBehavior:
    """``behavior`` with ``tolerance`` both ways: 0.1 is what a cluster without
    HPAConfigurableTolerance applies (it drops the rules' own for its flag's, 0.1 by default)."""
    return dataclasses.replace(
        behavior,
        scale_up=dataclasses.replace(behavior.scale_up, tolerance=tolerance),
        scale_down=dataclasses.replace(behavior.scale_down, tolerance=tolerance))


def behavior_from_spec(spec: Mapping[str, Any]) -> HpaBehavior:
    """``spec.behavior`` as a manifest or a ScaledObject's
    ``advanced.horizontalPodAutoscalerConfig.behavior`` writes it, with the API's defaults
    (``pkg/apis/autoscaling/v2/defaults.go``) for what it leaves out: a direction left out
    gets its default rules; within one, no policies or selectPolicy means the defaults and no
    ``stabilizationWindowSeconds`` that direction's default window (0 s up, 300 s down)."""
    return HpaBehavior(scale_up=_rules(spec, "scaleUp", DEFAULT_SCALE_UP),
                       scale_down=_rules(spec, "scaleDown", DEFAULT_SCALE_DOWN))


def _rules(spec: Mapping[str, Any], key: str, default: ScalingRules) -> ScalingRules:
    rules = spec.get(key)
    if rules is None:
        return default
    if not isinstance(rules, Mapping):
        raise ValueError(f"behavior.{key} must be a mapping, got {rules!r}")
    policies = rules.get("policies")
    window = rules.get("stabilizationWindowSeconds", default.stabilization_s)
    tolerance = rules.get("tolerance")
    return ScalingRules(
        stabilization_s=float(window),
        policies=default.policies if policies is None else tuple(
            ScalingPolicy(p["type"], int(p["value"]), float(p["periodSeconds"]))
            for p in policies),
        select=rules.get("selectPolicy", default.select),
        tolerance=None if tolerance is None else _quantity(tolerance, f"behavior.{key}.tolerance"))


def _quantity(value: object, key: str) -> float:
    """A Kubernetes quantity as ``tolerance`` takes it: a number, a decimal string, or
    thousandths with ``m`` ('50m' = 0.05)."""
    text = str(value).strip()
    try:
        return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        raise ValueError(f"{key} must be a quantity such as 0.05 or 50m, got {value!r}") from None


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
