"""The one place where a decision becomes KEDA's numbers.

KEDA's default metric type is ``AverageValue``: the HPA asks for
``ceil(metricValue / targetSize)`` replicas. With a target of 1 and the
desired replica count as the value, the HPA asks for exactly that count. Both
the int and the float fields are filled (KEDA reads the float when > 0), and
the value is cleaned as KEDA would clean it: NaN, infinities and negatives
become 0, floats keep 3 decimals.
"""

from __future__ import annotations

import math

TARGET_SIZE = 1.0


def clean(value: float) -> float:
    if not math.isfinite(value) or value < 0:
        return 0.0
    return round(value, 3)


def metric_value(desired_replicas: int) -> tuple[int, float]:
    """(metricValue, metricValueFloat) for a desired replica count."""
    value = clean(desired_replicas * TARGET_SIZE)
    return math.ceil(value), value


def target_size() -> tuple[int, float]:
    """(targetSize, targetSizeFloat)."""
    return math.ceil(TARGET_SIZE), TARGET_SIZE
