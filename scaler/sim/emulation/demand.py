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
  comes again. A request trace is first counted into windows (``REQUEST_WINDOW_S``).

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
    def at(self, elapsed_s: float) -> tuple[float, float, float]:
        """(requests/s over the fleet, mean prompt tokens, mean output tokens) at ``elapsed_s``."""
        ...


@dataclass(frozen=True)
class SteadyDemand:
    """The same rate and lengths all the time."""

    rate: float
    prompt_tokens: float
    output_tokens: float

    def at(self, elapsed_s: float) -> tuple[float, float, float]:
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

    def window(self, elapsed_s: float) -> int:
        """The trace's window playing ``elapsed_s`` after the start."""
        position = (max(elapsed_s, 0.0) * self.speed) % (len(self.trace) * self.trace.step_s)
        return min(int(position // self.trace.step_s), len(self.trace) - 1)

    def at(self, elapsed_s: float) -> tuple[float, float, float]:
        w = self.window(elapsed_s)
        trace = self.trace
        return float(trace.rate[w]), float(trace.mean_prompt[w]), float(trace.mean_output[w])

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
