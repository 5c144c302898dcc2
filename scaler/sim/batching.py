"""Continuous batching with chunked prefill on every replica of a fleet, one tick in closed form.

Each replica runs continuous batching with chunked prefill (vLLM V1). Admitted prompts are
prefilled in FIFO order. While prompt tokens are pending, every scheduler step carries all
running decodes plus a prefill chunk of ``min(max_num_batched_tokens - decodes, pending)``
tokens and lasts ``decode_step_s(decodes, cached) + chunk / prefill_tokens_per_s``; without
pending prompts a step is a pure decode step. A tick is evaluated in closed form as up to
three phases per replica (decode only until the first new prompt arrives, mixed steps until
the prompts are prefilled, decode only), with the step times taken at the start of each
phase; steps are counted fractionally, so one running request's token count is a piecewise
linear function of time and its first-token and finish times are interpolated within the
tick. A request needs one decode step after its prefill for its first token (TTFT = queue
wait + prefill + one step) and ``output`` steps in all. Everything per request is numpy
vectorised over the in-flight set; idle stretches are skipped tick-grid-aligned.

Pure and deterministic; :mod:`scaler.sim.request_fleet` owns the queue, the admissions and the
per-replica prefill counters and calls :func:`tick_phases` once per tick.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scaler.model.profile import ReplicaProfile
from scaler.sim.request_table import RequestTable

__all__ = ["EPS", "InFlight", "Phases", "record_times", "tick_phases"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

EPS = 1e-6          # tokens / steps tolerance


@dataclass
class InFlight:
    """Admitted, unfinished requests (struct of arrays)."""

    rid: IntArray
    rep: IntArray
    prompt: FloatArray
    output: FloatArray
    pf_end: FloatArray  # replica's cumulative prefill count at which this prompt is done
    gen: FloatArray     # decode steps done (fractional)

    @classmethod
    def empty(cls) -> InFlight:
        i, f = np.empty(0, dtype=np.int64), np.empty(0)
        return cls(i, i.copy(), f, f.copy(), f.copy(), f.copy())

    def select(self, keep: npt.NDArray[np.bool_]) -> InFlight:
        return InFlight(self.rid[keep], self.rep[keep], self.prompt[keep], self.output[keep],
                        self.pf_end[keep], self.gen[keep])

    def extend(self, rid: list[int], rep: list[int], prompt: list[float], output: list[float],
               pf_end: list[float]) -> InFlight:
        return InFlight(
            np.concatenate([self.rid, np.asarray(rid, dtype=np.int64)]),
            np.concatenate([self.rep, np.asarray(rep, dtype=np.int64)]),
            np.concatenate([self.prompt, np.asarray(prompt, dtype=np.float64)]),
            np.concatenate([self.output, np.asarray(output, dtype=np.float64)]),
            np.concatenate([self.pf_end, np.asarray(pf_end, dtype=np.float64)]),
            np.concatenate([self.gen, np.zeros(len(rid))]),
        )


@dataclass
class Phases:
    """Per-replica piecewise-linear step clock of one tick (times relative to tick start)."""

    off: FloatArray    # end of the decode-only phase before new prompts arrive
    t1: FloatArray     # length of the mixed prefill+decode phase
    d0: FloatArray     # step time before / chunk-free part during the mixed phase
    step1: FloatArray  # mixed step time
    d1: FloatArray     # pure decode step time after the prefill
    chunk: FloatArray  # prefill tokens per mixed step
    g_off: FloatArray  # steps done by ``off``
    g1: FloatArray     # steps done by ``off + t1``
    g_end: FloatArray  # steps done by the tick end

    def time_of(self, steps: FloatArray, rep: IntArray) -> FloatArray:
        """Inverse of the step clock: when replica ``rep`` completes ``steps`` steps."""
        g_off, g1, off = self.g_off[rep], self.g1[rep], self.off[rep]
        return np.where(
            steps <= g_off, steps * self.d0[rep],
            np.where(steps <= g1, off + (steps - g_off) * self.step1[rep],
                     off + self.t1[rep] + (steps - g1) * self.d1[rep]))


def tick_phases(profile: ReplicaProfile, dt: float, offsets: FloatArray, fl: InFlight,
                prefilled: FloatArray, decoding0: npt.NDArray[np.bool_], k: int,
                pf_admitted: FloatArray, pf_done: FloatArray
                ) -> tuple[Phases, FloatArray, npt.NDArray[np.bool_]]:
    """The tick's step clock per replica, prefill counters after it, and the requests
    whose prefill completes during it."""
    prof = profile
    running0 = np.bincount(fl.rep, weights=decoding0, minlength=k)
    cached0 = np.bincount(fl.rep, weights=prefilled + fl.gen, minlength=k)
    d0 = (prof.decode_step_base_s + prof.step_per_seq_s * running0
          + prof.decode_step_per_cached_token_s * cached0)
    pending = pf_admitted - pf_done
    has_prefill = pending > EPS
    off = np.where(has_prefill, np.minimum(offsets, dt), 0.0)
    chunk = np.where(has_prefill, np.minimum(
        np.maximum(prof.max_num_batched_tokens - running0, 1.0), pending), 1.0)
    step1 = d0 + chunk / prof.prefill_tokens_per_s
    need_t = pending * step1 / chunk
    room = dt - off
    done = has_prefill & (need_t <= room)
    t1 = np.where(has_prefill, np.minimum(need_t, room), 0.0)
    pf_after = np.where(done, pf_admitted,
                        pf_done + np.where(has_prefill, t1 / step1 * chunk, 0.0))
    g_off = off / d0
    g1 = g_off + t1 / step1
    decoding_new = ~decoding0 & (fl.pf_end <= pf_after[fl.rep] + EPS)
    new_decodes = np.bincount(fl.rep, weights=decoding_new, minlength=k)
    cached1 = cached0 + (pf_after - pf_done) + running0 * g1
    d1 = (prof.decode_step_base_s + prof.step_per_seq_s * (running0 + new_decodes)
          + prof.decode_step_per_cached_token_s * cached1)
    g_end = g1 + np.maximum(room - t1, 0.0) / d1
    phases = Phases(off, t1, d0, step1, d1, chunk, g_off, g1, g_end)
    return phases, pf_after, decoding_new


def record_times(table: RequestTable, start: float, phases: Phases, step_start: FloatArray,
                 gen: FloatArray, fl: InFlight) -> None:
    """Interpolate first-token and finish times of the requests that reached them."""
    first = np.flatnonzero((fl.gen < 1.0 - EPS) & (gen >= 1.0 - EPS))
    if first.size:
        steps = step_start[first] + (1.0 - fl.gen[first])
        rid = fl.rid[first]
        # Requests sharing a tick's prefill start from the first one's arrival (see
        # request_fleet): a later, short one must still not see its token before it arrived.
        table.first[rid] = np.maximum(start + phases.time_of(steps, fl.rep[first]),
                                      table.admit[rid])
    done = np.flatnonzero(fl.output - gen <= EPS)
    if done.size:
        steps = step_start[done] + (fl.output[done] - fl.gen[done])
        rid = fl.rid[done]
        table.finish[rid] = np.maximum(start + phases.time_of(steps, fl.rep[done]),
                                       table.first[rid])
