"""How many replicas a demand needs: a replica profile, corrected online by what pods really do.

Demand is what limits a vLLM replica: requests per second with their mean prompt and output
lengths. A replica's saturated request rate comes from its profile (prefill and decode-step
times, KV-cache size; ``ReplicaProfile.saturated_request_rate``). The replicas needed are the
fewest whose steady-state share of requests within the TTFT SLO reaches the target, with the
queueing model of the fluid fleet (Erlang-C delay on top of prefill and one decode step): at
a tight SLO that keeps utilisation well below 1, at a loose one close to it. An overloaded
fleet (rate >= capacity) never counts as meeting the SLO, whatever one instant looks like.

The profile is only a starting point (vLLM's throughput moved 1.5-2.7x between versions on
the same GPU; another model or longer prompts move it further). ``observe_saturated`` corrects
it, as NVIDIA Dynamo's planner corrects its profiled throughput: whenever a replica is
measured at capacity (``scaler.model.saturation``), its served request rate over the
profile's prediction for the same lengths is one sample of a correction factor. The factor is
the median of the last ``correction_samples`` samples (in log space), with the profile's own
1.0 filling in for missing ones until there are 3: one sample alone never moves it, two that
agree set it, and one wild sample among the recent ones is outvoted. Samples should be
independent (one per pod per rate window, ``scaler.model.observe.learn_capacity``): the
correction then reaches the truth within 3 rate windows of a pod being seen at capacity,
where an average weighted 0.1 per scrape needed minutes. Samples from pods still warming up,
stuck, or whose GPU idles say nothing about capacity and must not be passed in.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
import statistics
from collections import deque

from scaler.model.profile import ReplicaProfile
from scaler.model.queueing import FluidFleet

_MAX_REPLICAS = 100_000
_QUORUM = 3  # samples the median is taken over at least, the profile's 1.0 filling in


class CapacityModel:
    def __init__(self, profile: ReplicaProfile, *, slo_ttft_s: float = 2.0,
                 slo_target: float = 0.99, correction_samples: int = 5,
                 correction_bounds: tuple[float, float] = (0.1, 4.0)) -> None:
        """``correction_bounds``: the factor's range. Low down to 0.1, since a profile
        can be far too optimistic for the model really served (a 70B model under an 8B
        profile) and a low factor only costs replicas; high only to 4, since a factor too
        high costs the SLO."""
        if not 0 < slo_target < 1:
            raise ValueError(f"slo_target must be within (0, 1), got {slo_target!r}")
        if correction_samples < _QUORUM:
            raise ValueError(f"correction_samples must be >= {_QUORUM}, got "
                             f"{correction_samples!r}")
        self.profile = profile
        self.slo_ttft_s = slo_ttft_s
        self.slo_target = slo_target
        self.correction_bounds = correction_bounds
        self.correction = 1.0
        self._samples: deque[float] = deque(maxlen=correction_samples)  # log of each ratio
        self._corrected = profile

    def per_replica_rate(self, mean_prompt: float, mean_output: float) -> float:
        """Saturated requests/s of one replica at these lengths, corrected."""
        return self._corrected.saturated_request_rate(*_lengths(mean_prompt, mean_output))

    def replicas_for(self, rate: float, mean_prompt: float, mean_output: float) -> int:
        """Fewest replicas keeping ``slo_target`` of requests within the TTFT SLO at ``rate``."""
        if not rate > 0:
            return 0
        prompt, output = _lengths(mean_prompt, mean_output)
        unloaded = self._corrected.prefill_s(prompt) + self._corrected.decode_step_s(1, prompt)
        if unloaded >= self.slo_ttft_s:
            raise ValueError(
                f"no fleet meets the SLO: one {prompt:.0f}-token prompt alone takes "
                f"{unloaded:.3f} s to its first token, over the {self.slo_ttft_s:g} s TTFT SLO")
        per_replica = self.per_replica_rate(prompt, output)
        if per_replica <= 0:
            raise ValueError(f"a request of {prompt:.0f} + {output:.0f} tokens does not fit one "
                             "replica's KV cache")
        if rate / per_replica >= _MAX_REPLICAS:  # absurd demand (or inf): no search
            return _MAX_REPLICAS
        n = max(1, math.ceil(rate / per_replica))
        while self.slo_fraction(rate, prompt, output, n) < self.slo_target and n < _MAX_REPLICAS:
            n += 1
        return n

    def throughput_replicas(self, rate: float, mean_prompt: float, mean_output: float) -> int:
        """Replicas that serve ``rate`` at saturation: the floor when no fleet meets the SLO."""
        per_replica = self.per_replica_rate(mean_prompt, mean_output)
        if not rate > 0 or per_replica <= 0:
            return 0
        return int(min(_MAX_REPLICAS, math.ceil(rate / per_replica)))

    def slo_fraction(self, rate: float, mean_prompt: float, mean_output: float,
                     replicas: int) -> float:
        """Steady-state share of requests within the SLO (0 when overloaded)."""
        prompt, output = _lengths(mean_prompt, mean_output)
        if replicas <= 0 or rate >= replicas * self.per_replica_rate(prompt, output):
            return 0.0 if rate > 0 else 1.0
        fleet = FluidFleet(self._corrected, slo_ttft_s=self.slo_ttft_s)
        return fleet.step(rate=rate, mean_prompt=prompt, mean_output=output,
                          ready_replicas=replicas).slo_fraction

    def observe_saturated(self, served_rate_per_replica: float, mean_prompt: float,
                          mean_output: float) -> None:
        """One saturated replica's measured request rate: a sample of the correction."""
        predicted = self.profile.saturated_request_rate(*_lengths(mean_prompt, mean_output))
        if not (served_rate_per_replica > 0 and predicted > 0):
            return
        ratio = served_rate_per_replica / predicted
        if not math.isfinite(ratio):
            return
        low, high = self.correction_bounds
        self._samples.append(math.log(min(max(ratio, low), high)))
        votes = [*self._samples, *[0.0] * (_QUORUM - len(self._samples))]
        self.correction = math.exp(statistics.median(votes))
        self._corrected = self.profile.scaled(self.correction)


def _lengths(mean_prompt: float, mean_output: float) -> tuple[float, float]:
    """Lengths a profile can use (a window without requests has no mean: one token each)."""
    return max(mean_prompt, 1.0), max(mean_output, 1.0)
