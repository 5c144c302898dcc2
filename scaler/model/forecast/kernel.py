"""The triangular smoothing kernel over neighbouring phases of a season.

Shared by the smoother's seasons (the forecaster builds their kernels: each seasonal update
spread over nearby phases) and the daily-shape re-estimate (``daily_shape.py``, which the
smoother calls, so it cannot import from the smoother).
"""

from __future__ import annotations

__all__ = ["kernel"]


def kernel(half_width: int) -> tuple[tuple[int, float], ...]:
    """Triangular weights over offsets -w..w, summing to one."""
    raw = [(j, float(half_width + 1 - abs(j))) for j in range(-half_width, half_width + 1)]
    total = sum(w for _, w in raw)
    return tuple((j, w / total) for j, w in raw)
