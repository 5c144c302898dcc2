"""An HPA's ``spec.behavior``, as the emulated controller (``scaler.sim.hpa``) applies it.

Scaling policies and rules per direction (window, policies, how one is picked, and since
Kubernetes 1.33 a tolerance of its own: KEP-4951, ``HPAConfigurableTolerance``), the API's
defaults ("Default Behavior" on the "Horizontal Pod Autoscaling" page and
``pkg/apis/autoscaling/v2/defaults.go``), what the shipped ScaledObject asks for, and a
reader of a ``behavior`` as a manifest writes it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

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
