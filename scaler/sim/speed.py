"""The simulated pods' true speed: a profile ``speed`` times as fast as the one the scaler
starts from (``--fleet-speed``).

Real fleets rarely run at their profile (another model, longer prompts, another vLLM
version), so the replay can serve with pods faster or slower than the profile the
predictive policy's capacity model starts from; what it learns from their pages is then
what closes the gap. The oracle plans with the pods' true speed. The scaling is the capacity
model's own correction (``ReplicaProfile.scaled``), so a capacity model corrected by
exactly ``speed`` predicts what these pods serve.
"""

from __future__ import annotations

import math

from scaler.model.profile import ReplicaProfile


def at_speed(profile: ReplicaProfile, speed: float) -> ReplicaProfile:
    """``profile`` with every time divided and every rate multiplied by ``speed`` (> 0)."""
    if not (math.isfinite(speed) and speed > 0):
        raise ValueError(f"fleet speed must be a finite number > 0, got {speed!r}")
    return profile if speed == 1.0 else profile.scaled(speed)
