"""Emulated vLLM engines that serve a demand as time passes: the state behind ``scaler emulate``.

The fleet is the replay's fluid model (:class:`~scaler.model.queueing.FluidFleet`) stepped
in whole ticks of ``tick_s`` up to the time the caller gives; each tick's outcome is written
into one :class:`~scaler.sim.emulation.engine_state.EngineState` per pod, so each pod's page
moves as a real vLLM pod's would under that load:

- gauges: ``running`` and KV-cache use are the fluid load per replica (the equal split);
  ``waiting`` is the backlog per replica, the requests beyond what the pods serve (vLLM
  admits every request its batch has room for, so a page shows waiting only once the batch
  is full; the same choice as :mod:`scaler.sim.pages`);
- counters only grow, in whole requests: each tick's served requests (the fluid's fraction
  carried to the next tick) add to ``request_success_total{finished_reason="stop"}``, their
  prompt and output tokens to the token counters, their prompt tokens to the prefix-cache
  queries (no hits: emulated requests share no prefix);
- histograms count exactly those requests: their TTFTs spread over the tick's p50/p95/p99
  (:func:`ttft_samples`), queue time, prefill and decode from the profile's step times;
  the iteration-tokens histogram gets the tick's engine steps.

Pure: no clock and no I/O; the caller passes the seconds elapsed (``advance_to``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scaler.model.profile import ReplicaProfile
from scaler.model.queueing import FluidFleet, FluidTick
from scaler.sim.emulation.demand import Demand
from scaler.sim.emulation.engine_state import EngineState

__all__ = ["TTFT_LEVELS", "FleetStatus", "LiveFleet", "ttft_samples"]

TTFT_LEVELS = tuple((i + 0.5) / 10 for i in range(10))  # quantiles the TTFTs are spread over
_EPS_S = 1e-9


@dataclass(frozen=True)
class FleetStatus:
    """One line's worth of what the fleet does now (per pod: each pod shows the same)."""

    elapsed_s: float
    rate: float  # requests/s asked of the whole fleet
    waiting: int
    running: int
    kv_cache_usage: float
    completed: int  # requests each pod has completed since the start
    ttft_p50_s: float


class LiveFleet:
    """One engine per pod, fed from a fluid fleet stepped in ticks of ``tick_s`` (module doc)."""

    def __init__(self, engines: Sequence[EngineState], demand: Demand,
                 profile: ReplicaProfile, *, tick_s: float = 1.0) -> None:
        if not engines:
            raise ValueError("LiveFleet needs at least one engine")
        self.engines = list(engines)
        self.demand = demand
        self.profile = profile
        self.tick_s = tick_s
        self.fleet = FluidFleet(profile, tick_s=tick_s)
        self.ticks = 0
        self._served = 0.0  # requests served per pod, fluid
        self._completed = 0  # of which recorded on the pages, whole
        self._last: tuple[float, FluidTick] | None = None

    @property
    def elapsed_s(self) -> float:
        """Seconds of serving done so far (whole ticks)."""
        return self.ticks * self.tick_s

    def advance_to(self, elapsed_s: float) -> None:
        """Serve every whole tick that ends by ``elapsed_s`` seconds after the start."""
        while (self.ticks + 1) * self.tick_s <= elapsed_s + _EPS_S:
            self._step()

    def status(self) -> FleetStatus:
        engine = self.engines[0]
        rate, tick = self._last if self._last is not None else (0.0, None)
        return FleetStatus(self.elapsed_s, rate, engine.waiting, engine.running,
                           engine.kv_cache_usage, self._completed,
                           tick.ttft_p50_s if tick is not None else math.nan)

    def _step(self) -> None:
        start = self.elapsed_s
        rate, prompt, output = self.demand.between(start, start + self.tick_s)
        prompt, output = max(prompt, 1.0), max(output, 1.0)
        pods = len(self.engines)
        tick = self.fleet.step(rate=rate, mean_prompt=prompt, mean_output=output,
                               ready_replicas=pods)
        self.ticks += 1
        self._last = (rate, tick)
        self._served += tick.served / pods
        finished = math.floor(self._served + _EPS_S) - self._completed
        self._completed += finished
        for engine in self.engines:
            engine.waiting = round(tick.backlog / pods)
            engine.running = round(tick.load.running)
            engine.kv_cache_usage = tick.load.kv_cache_usage
            self._record(engine, tick, finished, round(prompt), round(output))

    def _record(self, engine: EngineState, tick: FluidTick, finished: int, prompt: int,
                output: int) -> None:
        """``finished`` requests of these lengths, and the tick's engine steps."""
        running = tick.load.running
        step_s = self.profile.decode_step_s(running, running * (prompt + output / 2))
        if running >= 1:  # steps of the batch, each with its share of the tick's tokens
            steps = max(1, round(self.tick_s / step_s))
            tokens = tick.served / len(self.engines) * (prompt + output)
            engine.iteration_tokens.observe(tokens / steps, steps)
        engine.prompt_tokens += finished * prompt
        engine.generation_tokens += finished * output
        engine.prefix_cache_queries += finished * prompt
        samples = ttft_samples(tick)
        if not finished or not samples:
            engine.request_success["stop"] = engine.request_success.get("stop", 0.0) + finished
            return
        prefill_s = self.profile.prefill_s(prompt)
        for i, ttft in enumerate(samples):
            share = finished * (i + 1) // len(samples) - finished * i // len(samples)
            engine.record_request(prompt_tokens=prompt, generation_tokens=output,
                                  queue_s=max(0.0, ttft - prefill_s - step_s), ttft_s=ttft,
                                  e2e_s=ttft + (output - 1) * step_s, max_tokens=output,
                                  n=share)


def ttft_samples(tick: FluidTick) -> list[float]:
    """TTFTs at ``TTFT_LEVELS``: p50 below the median, linear between p50, p95 and p99
    (none that is infinite: requests that met no capacity have no first token yet)."""
    p50, p95, p99 = tick.ttft_p50_s, tick.ttft_p95_s, tick.ttft_p99_s
    samples = []
    for q in TTFT_LEVELS:
        if q <= 0.5:
            value = p50
        elif q <= 0.95:
            value = p50 + (p95 - p50) * (q - 0.5) / 0.45
        else:
            value = p95 + (p99 - p95) * (q - 0.95) / 0.04
        samples.append(value)
    return [v for v in samples if math.isfinite(v)]
