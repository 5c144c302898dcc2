"""What the emulated pods of ``scaler emulate`` are asked to serve, as time goes by.

Three kinds of demand, each a rate of requests/s over the whole fleet with the mean prompt
and output tokens of those requests, read at a number of seconds since the start:

- :class:`SteadyDemand`: one rate and one pair of lengths, all the time (``--rate``);
- a named level (``--load``), a steady demand whose rate is a share of what the pods can
  serve together at those lengths (the profile's saturated rate times the pods): ``idle``
  asks nothing, ``busy`` 60% (the pods keep up, nothing waits), ``overloaded`` 130% (the
  pods serve at their limit, KV cache as full as their batches make it, the queue grows by
  the 30% they cannot serve, without end);
- :class:`TraceDemand`: a trace as ``scaler replay --trace`` reads it, played from its first
  window at ``speed`` trace seconds per second and looped: after its last window the first
  comes again. A request trace is first counted into windows (``REQUEST_WINDOW_S``). The
  rates are the trace's own (requests/s): ``speed`` plays the trace's ups and downs faster,
  it does not multiply the demand; a span covering several windows gets their mean.

Pure: no clock, no I/O; the caller says how many seconds have passed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from scaler.model.profile import ReplicaProfile
from scaler.sim.traces import RateTrace, RequestTrace

__all__ = ["LEVELS", "REQUEST_WINDOW_S", "Demand", "SteadyDemand", "TraceDemand",
           "fleet_capacity", "level_demand"]

# Share of the pods' joint saturated rate each named level asks for.
LEVELS = {"idle": 0.0, "busy": 0.6, "overloaded": 1.3}
REQUEST_WINDOW_S = 10.0  # a request trace's arrivals are counted per window of this


class Demand(Protocol):
    def between(self, start_s: float, end_s: float) -> tuple[float, float, float]:
        """(requests/s over the fleet, mean prompt tokens, mean output tokens) on average
        from ``start_s`` to ``end_s`` seconds after the start."""
        ...


@dataclass(frozen=True)
class SteadyDemand:
    """The same rate and lengths all the time."""

    rate: float
    prompt_tokens: float
    output_tokens: float

    def between(self, start_s: float, end_s: float) -> tuple[float, float, float]:
        return self.rate, self.prompt_tokens, self.output_tokens


def fleet_capacity(profile: ReplicaProfile, pods: int, prompt_tokens: float,
                   output_tokens: float) -> float:
    """Requests/s ``pods`` replicas of ``profile`` serve together at these lengths."""
    return pods * profile.saturated_request_rate(prompt_tokens, output_tokens)


def level_demand(level: str, profile: ReplicaProfile, pods: int, prompt_tokens: float,
                 output_tokens: float) -> SteadyDemand:
    """The steady demand of a named level (``LEVELS``) for ``pods`` replicas of ``profile``."""
    if level not in LEVELS:
        raise ValueError(f"unknown load level {level!r}; expected one of {', '.join(LEVELS)}")
    share = LEVELS[level]
    capacity = fleet_capacity(profile, pods, prompt_tokens, output_tokens)
    return SteadyDemand(share * capacity, prompt_tokens, output_tokens)


class TraceDemand:
    """A trace's windows played from the first at ``speed`` trace seconds a second, looped."""

    def __init__(self, trace: RateTrace | RequestTrace, *, speed: float = 1.0) -> None:
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a number > 0, got {speed!r}")
        self.trace = trace if isinstance(trace, RateTrace) else windows_of(trace)
        if not len(self.trace):
            raise ValueError(f"trace {self.trace.name!r} has no windows")
        self.speed = speed

    @property
    def loop_s(self) -> float:
        """Seconds (on the caller's clock) before the trace starts again."""
        return len(self.trace) * self.trace.step_s / self.speed

    def between(self, start_s: float, end_s: float) -> tuple[float, float, float]:
        """The mean rate of the windows played in that span (each by its share of it), and
        their lengths weighted by arrivals: a fast replay skips no burst."""
        trace, step = self.trace, self.trace.step_s
        start = max(start_s, 0.0) * self.speed
        end = min(max(end_s * self.speed, start), start + len(trace) * step)  # <= one loop
        arrivals = prompt = output = 0.0
        for w in range(int(start // step), math.ceil(end / step)):
            i = w % len(trace)
            count = float(trace.rate[i]) * (min(end, (w + 1) * step) - max(start, w * step))
            arrivals += max(count, 0.0)
            prompt += max(count, 0.0) * float(trace.mean_prompt[i])
            output += max(count, 0.0) * float(trace.mean_output[i])
        if arrivals <= 0:  # nothing arrives (or an instant): the lengths of its window
            i = int(start // step) % len(trace)
            rate = float(trace.rate[i]) if end <= start else 0.0
            return rate, float(trace.mean_prompt[i]), float(trace.mean_output[i])
        return arrivals / (end - start), prompt / arrivals, output / arrivals

    @property
    def peak_rate(self) -> float:
        return float(self.trace.rate.max())


def windows_of(trace: RequestTrace, window_s: float = REQUEST_WINDOW_S) -> RateTrace:
    """A request trace counted into windows: arrival rate and mean lengths per window.

    A window without arrivals keeps the lengths of the one before (any lengths would do at a
    rate of 0, but the fleet model needs lengths that fit).
    """
    bins = np.floor(trace.arrival_s / window_s).astype(np.int64)
    count = int(bins.max()) + 1 if bins.size else 0
    arrivals = np.bincount(bins, minlength=count).astype(np.float64)
    prompt = np.bincount(bins, weights=trace.prompt_tokens, minlength=count)
    output = np.bincount(bins, weights=trace.output_tokens, minlength=count)
    mean_p = np.empty(count)
    mean_o = np.empty(count)
    last = (max(float(trace.prompt_tokens.mean()), 1.0) if count else 1.0,
            max(float(trace.output_tokens.mean()), 1.0) if count else 1.0)
    for i in range(count):
        if arrivals[i] > 0:
            last = (max(prompt[i] / arrivals[i], 1.0), max(output[i] / arrivals[i], 1.0))
        mean_p[i], mean_o[i] = last
    starts = np.arange(count, dtype=np.float64) * window_s
    return RateTrace(trace.name, window_s, starts, arrivals / window_s, mean_p, mean_o)
