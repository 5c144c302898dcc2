"""Simulated vLLM fleets for the what-if replay: a request-level model and a fluid model.

Both are pure and deterministic: no clock, no I/O, no randomness. Replica start-up, node
provisioning and GPU-hour accounting belong to the replay engine; a fleet only sees the
replicas that are ready to serve. Per-replica performance comes from a
:class:`~scaler.model.profile.ReplicaProfile`.

RequestFleet (request traces)
-----------------------------
Requests wait in one fleet-wide FIFO queue. At the start of every tick of ``tick_s`` the
head of the queue is admitted to the ready replica with the most free KV-cache tokens, as
long as that replica has room for the whole ``prompt + output`` (reserved at admission,
released at finish: a conservative stand-in for vLLM's on-demand blocks, since preemption is
not modelled) and a free sequence slot (``max_num_seqs``); a head that fits nowhere blocks
the queue (FCFS, as vLLM). A request whose ``prompt + output`` exceeds the KV cache can never
run: ``add_arrivals`` counts it in ``rejected`` and drops it (vLLM rejects it at
``max_model_len``).

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

Resolution: admissions happen at tick starts, so queue waits are tick-quantised (a request
that arrives at an idle replica mid-tick starts at its arrival; one that waits for a slot
starts at the next tick after the slot is freed). Requests admitted in the same tick to a
replica that was idle in prefill are treated as available from the first one's arrival.

A replica that leaves (``set_replicas`` without it) puts its in-flight requests back at the
head of the queue in arrival order, losing their progress (counted in ``requeued``); their
TTFT is measured from the original arrival to the first token of the attempt that completes.
``loads()`` shows what each pod's ``/metrics`` would read: ``running`` = its in-flight
requests, ``kv_cache_usage`` = tokens actually cached (prefilled prompt + generated) over the
KV capacity, and ``waiting`` = the fleet queue (requests that have arrived) divided evenly
over the ready replicas, which is what per-pod ``num_requests_waiting`` averages to when a
least-loaded router spreads the queue.

FluidFleet (rate series)
------------------------
Requests are a fluid. Each replica serves at most ``mu`` requests/s, its saturated rate for
the tick's mean lengths (``ReplicaProfile.saturated_request_rate``); with ``N`` ready
replicas the capacity is ``C = N * mu``. Work not served in a tick is carried as a backlog
(FIFO), and surplus capacity drains it. A request arriving ``u`` seconds into the tick waits
in two parts:

* the backlog ahead of it at the current capacity, ``max(0, backlog + (rate - C) u) / C``
  (so this tick's arrivals see a uniform spread of fluid waits; capacity changes later in
  the run are not foreseen);
* a stationary queueing delay, M/M/c with ``c = N * servers_per_replica`` servers of rate
  ``mu / servers_per_replica``: waits with the Erlang-C probability ``P_w`` and then for an
  exponential time of rate ``C (1 - rho)``, ``rho = rate / C`` capped at 0.98. One server
  per replica (the default) treats a replica as one queue whose service time is its
  per-request share ``1 / mu``: the TTFT tail then grows steadily from moderate load, as
  vLLM latency-load sweeps (benchmark_serving) show; a server per batch slot would keep
  the tail flat until rho ~ 1.

TTFT = wait + prefill time of the mean prompt + one decode step at the current batch size.
Tick percentiles invert the closed-form distribution of the sum (safeguarded Newton), the SLO
fraction is its CDF at the SLO; run-wide ``slo_attainment`` and ``ttft_quantiles`` weight each
tick's distribution by its arrivals. With no ready replica (or lengths that do not fit) every
wait is infinite. Per-replica load (equal split): the decoding batch ``B`` solves Little's law
``B = x * o * t(B) / (1 - x * p / prefill_rate)`` at the served rate ``x`` per replica
(capped at the KV/seq limit), ``running = B +`` requests in prefill, ``kv_cache_usage =
B (p + o/2) / kv_cache_tokens``, ``waiting = (backlog + Erlang-C queue) / N``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from scipy.special import pdtr

from scaler.model.profile import ReplicaProfile
from scaler.sim.traces import RequestTrace

__all__ = [
    "FluidFleet",
    "FluidTick",
    "ReplicaLoad",
    "RequestFleet",
    "RequestResults",
    "ServedTokens",
    "erlang_c",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
_T = TypeVar("_T", bound=np.generic)

_EPS = 1e-6          # tokens / steps tolerance
_TIME_EPS = 1e-9     # seconds
RHO_CAP = 0.98       # utilisation cap of the stationary queueing term
_HORIZON_S = 1e12    # "never" for run-wide quantiles


@dataclass(frozen=True)
class ReplicaLoad:
    """What one replica's ``/metrics`` page would show."""

    waiting: float
    running: float
    kv_cache_usage: float


@dataclass(frozen=True)
class ServedTokens:
    """Tokens processed so far (prefilled prompt tokens, generated tokens)."""

    prompt: float
    generation: float


@dataclass(frozen=True)
class RequestResults:
    """Per-request outcomes in arrival order; NaN where a stage was not reached."""

    arrival_s: FloatArray
    prompt_tokens: IntArray
    output_tokens: IntArray
    queue_s: FloatArray
    ttft_s: FloatArray
    finish_s: FloatArray

    def __len__(self) -> int:
        return int(self.arrival_s.size)


# --------------------------------------------------------------------------- request level


class _Requests:
    """Append-only request table with amortised growth."""

    def __init__(self) -> None:
        self.n = 0
        self.arrival = np.empty(0)
        self.prompt = np.empty(0, dtype=np.int64)
        self.output = np.empty(0, dtype=np.int64)
        self.admit = np.empty(0)
        self.first = np.empty(0)
        self.finish = np.empty(0)

    def append(self, arrival: FloatArray, prompt: IntArray, output: IntArray) -> None:
        need = self.n + arrival.size
        if need > self.arrival.size:
            size = max(need, 2 * self.arrival.size, 1024)
            self.arrival = _grown(self.arrival, size, math.nan)
            self.prompt = _grown(self.prompt, size, 0)
            self.output = _grown(self.output, size, 0)
            self.admit = _grown(self.admit, size, math.nan)
            self.first = _grown(self.first, size, math.nan)
            self.finish = _grown(self.finish, size, math.nan)
        end = self.n + arrival.size
        self.arrival[self.n:end] = arrival
        self.prompt[self.n:end] = prompt
        self.output[self.n:end] = output
        self.n = end


def _grown(array: npt.NDArray[_T], size: int, fill: float) -> npt.NDArray[_T]:
    out = np.full(size, fill, dtype=array.dtype)
    out[:array.size] = array
    return out


@dataclass
class _InFlight:
    """Admitted, unfinished requests (struct of arrays)."""

    rid: IntArray
    rep: IntArray
    prompt: FloatArray
    output: FloatArray
    pf_end: FloatArray  # replica's cumulative prefill count at which this prompt is done
    gen: FloatArray     # decode steps done (fractional)

    @classmethod
    def empty(cls) -> _InFlight:
        i, f = np.empty(0, dtype=np.int64), np.empty(0)
        return cls(i, i.copy(), f, f.copy(), f.copy(), f.copy())

    def select(self, keep: npt.NDArray[np.bool_]) -> _InFlight:
        return _InFlight(self.rid[keep], self.rep[keep], self.prompt[keep], self.output[keep],
                         self.pf_end[keep], self.gen[keep])

    def extend(self, rid: list[int], rep: list[int], prompt: list[float], output: list[float],
               pf_end: list[float]) -> _InFlight:
        return _InFlight(
            np.concatenate([self.rid, np.asarray(rid, dtype=np.int64)]),
            np.concatenate([self.rep, np.asarray(rep, dtype=np.int64)]),
            np.concatenate([self.prompt, np.asarray(prompt, dtype=np.float64)]),
            np.concatenate([self.output, np.asarray(output, dtype=np.float64)]),
            np.concatenate([self.pf_end, np.asarray(pf_end, dtype=np.float64)]),
            np.concatenate([self.gen, np.zeros(len(rid))]),
        )


@dataclass
class _Phases:
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


class RequestFleet:
    """Request-level vLLM fleet (model and assumptions in the module docstring).

    Feed requests with :meth:`add_arrivals` (any time before they are due; a whole trace up
    front is fine) and move time with :meth:`advance_to`; change the serving set with
    :meth:`set_replicas`.
    """

    def __init__(self, profile: ReplicaProfile, *, tick_s: float = 0.1) -> None:
        if not (math.isfinite(tick_s) and tick_s > 0):
            raise ValueError(f"tick_s must be > 0, got {tick_s!r}")
        self.profile = profile
        self.tick_s = float(tick_s)
        self.requeued = 0
        self.rejected = 0
        self._now = 0.0
        self._table = _Requests()
        self._next = 0
        self._head: deque[int] = deque()
        self._ids: list[str] = []
        self._pf_admitted = np.zeros(0)
        self._pf_done = np.zeros(0)
        self._kv_reserved = np.zeros(0)
        self._seqs = np.zeros(0, dtype=np.int64)
        self._flight = _InFlight.empty()
        self._served_prompt = 0.0
        self._served_generation = 0.0
        self._finished = 0

    # ----------------------------------------------------------------- inputs

    @property
    def now_s(self) -> float:
        return self._now

    @property
    def replica_ids(self) -> tuple[str, ...]:
        return tuple(self._ids)

    def add_arrivals(self, arrival_s: npt.ArrayLike, prompt_tokens: npt.ArrayLike,
                     output_tokens: npt.ArrayLike) -> None:
        """Queue requests (sorted, not before earlier ones); prompts/outputs below 1 count as 1."""
        arrival = np.asarray(arrival_s, dtype=np.float64).ravel()
        prompt = np.maximum(np.asarray(prompt_tokens, dtype=np.int64).ravel(), 1)
        output = np.maximum(np.asarray(output_tokens, dtype=np.int64).ravel(), 1)
        if not (arrival.size == prompt.size == output.size):
            raise ValueError(
                f"add_arrivals: {arrival.size} arrivals, {prompt.size} prompts and "
                f"{output.size} outputs differ in length"
            )
        if not arrival.size:
            return
        if not np.all(np.isfinite(arrival)) or np.any(np.diff(arrival) < 0):
            raise ValueError("add_arrivals: arrival times must be finite and sorted")
        last = self._table.arrival[self._table.n - 1] if self._table.n else -math.inf
        if arrival[0] < last:
            raise ValueError(
                f"add_arrivals: arrival {arrival[0]!r} is before an earlier request ({last!r})"
            )
        fits = prompt + output <= self.profile.kv_cache_tokens
        self.rejected += int(fits.size - np.count_nonzero(fits))
        self._table.append(arrival[fits], prompt[fits], output[fits])

    def add_trace(self, trace: RequestTrace) -> None:
        """Queue a whole request trace."""
        self.add_arrivals(trace.arrival_s, trace.prompt_tokens, trace.output_tokens)

    def set_replicas(self, ready_ids: Sequence[str]) -> None:
        """Serve with exactly ``ready_ids`` from now; leavers requeue their requests."""
        ids = list(ready_ids)
        if len(set(ids)) != len(ids):
            raise ValueError(f"set_replicas: duplicate replica ids in {ids!r}")
        if ids == self._ids:
            return
        old_index = {rid: j for j, rid in enumerate(self._ids)}
        mapping = np.full(len(self._ids), -1, dtype=np.int64)
        for j, rid in enumerate(ids):
            if rid in old_index:
                mapping[old_index[rid]] = j
        self._requeue(mapping[self._flight.rep] < 0)
        self._flight.rep = mapping[self._flight.rep]
        self._pf_admitted = self._remap(self._pf_admitted, ids, old_index)
        self._pf_done = self._remap(self._pf_done, ids, old_index)
        self._kv_reserved = self._remap(self._kv_reserved, ids, old_index)
        self._seqs = self._remap(self._seqs, ids, old_index)
        self._ids = ids

    def _remap(self, values: npt.NDArray[_T], ids: list[str],
               old_index: dict[str, int]) -> npt.NDArray[_T]:
        out = np.zeros(len(ids), dtype=values.dtype)
        for j, rid in enumerate(ids):
            if rid in old_index:
                out[j] = values[old_index[rid]]
        return out

    def _requeue(self, leaving: npt.NDArray[np.bool_]) -> None:
        if not leaving.any():
            return
        rids = self._flight.rid[leaving]
        table = self._table
        table.admit[rids] = math.nan
        table.first[rids] = math.nan
        self.requeued += int(rids.size)
        merged = sorted([*self._head, *rids.tolist()], key=lambda r: (table.arrival[r], r))
        self._head = deque(merged)
        self._flight = self._flight.select(~leaving)

    # ----------------------------------------------------------------- time

    def advance(self, until_s: float, arrival_s: npt.ArrayLike = (),
                prompt_tokens: npt.ArrayLike = (), output_tokens: npt.ArrayLike = ()) -> None:
        """``add_arrivals`` then ``advance_to(until_s)``."""
        self.add_arrivals(arrival_s, prompt_tokens, output_tokens)
        self.advance_to(until_s)

    def advance_to(self, t_s: float) -> None:
        """Simulate up to time ``t_s`` (seconds from the trace start) in ticks of ``tick_s``."""
        if t_s < self._now - _TIME_EPS:
            raise ValueError(f"advance_to: {t_s!r} is before the fleet's time {self._now!r}")
        while self._now < t_s - _TIME_EPS:
            end = min(self._now + self.tick_s, t_s)
            if not self._flight.rid.size:
                head = self._head_arrival()
                if not self._ids or head >= t_s:
                    self._now = t_s
                    break
                if head >= end:
                    skip = math.floor((head - self._now) / self.tick_s) * self.tick_s
                    self._now = min(t_s, self._now + skip)
                    continue
            self._tick(self._now, end)
            self._now = end

    def _head_arrival(self) -> float:
        if self._head:
            return float(self._table.arrival[self._head[0]])
        if self._next < self._table.n:
            return float(self._table.arrival[self._next])
        return math.inf

    def _pop_head(self) -> None:
        if self._head:
            self._head.popleft()
        else:
            self._next += 1

    def _admit(self, start: float, end: float) -> FloatArray:
        """Admit queue heads that arrived before ``end``; returns per-replica prefill offsets."""
        k = len(self._ids)
        offsets = np.zeros(k)
        if not k or self._head_arrival() >= end:
            return offsets
        table, prof = self._table, self.profile
        free = (prof.kv_cache_tokens - self._kv_reserved).tolist()
        seqs = self._seqs.tolist()
        pf_admitted = self._pf_admitted.tolist()
        idle = (self._pf_admitted - self._pf_done <= _EPS).tolist()
        rids: list[int] = []
        reps: list[int] = []
        prompts: list[float] = []
        outputs: list[float] = []
        ends: list[float] = []
        while True:
            arrival = self._head_arrival()
            if arrival >= end:
                break
            rid = self._head[0] if self._head else self._next
            prompt, output = float(table.prompt[rid]), float(table.output[rid])
            best, best_free = -1, -1.0
            for j in range(k):
                if seqs[j] < prof.max_num_seqs and free[j] >= prompt + output > 0 \
                        and free[j] > best_free:
                    best, best_free = j, free[j]
            if best < 0:
                break
            self._pop_head()
            if idle[best]:
                offsets[best] = max(0.0, arrival - start)
                idle[best] = False
            free[best] -= prompt + output
            seqs[best] += 1
            pf_admitted[best] += prompt
            table.admit[rid] = max(arrival, start)
            rids.append(rid)
            reps.append(best)
            prompts.append(prompt)
            outputs.append(output)
            ends.append(pf_admitted[best])
        if rids:
            self._kv_reserved = prof.kv_cache_tokens - np.asarray(free)
            self._seqs = np.asarray(seqs, dtype=np.int64)
            self._pf_admitted = np.asarray(pf_admitted)
            self._flight = self._flight.extend(rids, reps, prompts, outputs, ends)
        return offsets

    def _tick(self, start: float, end: float) -> None:
        offsets = self._admit(start, end)
        fl = self._flight
        if not fl.rid.size:
            return
        k = len(self._ids)
        pf_start = self._pf_done[fl.rep]
        prefilled = np.clip(pf_start - (fl.pf_end - fl.prompt), 0.0, fl.prompt)
        decoding0 = fl.pf_end <= pf_start + _EPS
        phases, pf_after, decoding_new = self._phases(end - start, offsets, fl, prefilled,
                                                      decoding0, k)
        step_start = np.where(
            decoding_new, phases.g_off[fl.rep] + (fl.pf_end - pf_start) / phases.chunk[fl.rep],
            0.0)
        gain = np.where(decoding0 | decoding_new, phases.g_end[fl.rep] - step_start, 0.0)
        gen = np.minimum(fl.gen + gain, fl.output)
        self._record_times(start, phases, step_start, gen, fl)
        self._served_prompt += float(np.sum(pf_after - self._pf_done))
        self._served_generation += float(np.sum(gen - fl.gen))
        self._pf_done = pf_after
        fl.gen = gen
        self._retire(fl.output - gen <= _EPS, k)

    def _phases(self, dt: float, offsets: FloatArray, fl: _InFlight, prefilled: FloatArray,
                decoding0: npt.NDArray[np.bool_], k: int
                ) -> tuple[_Phases, FloatArray, npt.NDArray[np.bool_]]:
        """The tick's step clock per replica, prefill counters after it, and the requests
        whose prefill completes during it."""
        prof = self.profile
        running0 = np.bincount(fl.rep, weights=decoding0, minlength=k)
        cached0 = np.bincount(fl.rep, weights=prefilled + fl.gen, minlength=k)
        d0 = (prof.decode_step_base_s + prof.decode_step_per_seq_s * running0
              + prof.decode_step_per_cached_token_s * cached0)
        pending = self._pf_admitted - self._pf_done
        has_prefill = pending > _EPS
        off = np.where(has_prefill, np.minimum(offsets, dt), 0.0)
        chunk = np.where(has_prefill, np.minimum(
            np.maximum(prof.max_num_batched_tokens - running0, 1.0), pending), 1.0)
        step1 = d0 + chunk / prof.prefill_tokens_per_s
        need_t = pending * step1 / chunk
        room = dt - off
        done = has_prefill & (need_t <= room)
        t1 = np.where(has_prefill, np.minimum(need_t, room), 0.0)
        pf_after = np.where(done, self._pf_admitted,
                            self._pf_done + np.where(has_prefill, t1 / step1 * chunk, 0.0))
        g_off = off / d0
        g1 = g_off + t1 / step1
        decoding_new = ~decoding0 & (fl.pf_end <= pf_after[fl.rep] + _EPS)
        new_decodes = np.bincount(fl.rep, weights=decoding_new, minlength=k)
        cached1 = cached0 + (pf_after - self._pf_done) + running0 * g1
        d1 = (prof.decode_step_base_s + prof.decode_step_per_seq_s * (running0 + new_decodes)
              + prof.decode_step_per_cached_token_s * cached1)
        g_end = g1 + np.maximum(room - t1, 0.0) / d1
        phases = _Phases(off, t1, d0, step1, d1, chunk, g_off, g1, g_end)
        return phases, pf_after, decoding_new

    def _record_times(self, start: float, phases: _Phases, step_start: FloatArray,
                      gen: FloatArray, fl: _InFlight) -> None:
        table = self._table
        first = np.flatnonzero((fl.gen < 1.0 - _EPS) & (gen >= 1.0 - _EPS))
        if first.size:
            steps = step_start[first] + (1.0 - fl.gen[first])
            table.first[fl.rid[first]] = start + phases.time_of(steps, fl.rep[first])
        done = np.flatnonzero(fl.output - gen <= _EPS)
        if done.size:
            steps = step_start[done] + (fl.output[done] - fl.gen[done])
            table.finish[fl.rid[done]] = start + phases.time_of(steps, fl.rep[done])

    def _retire(self, done: npt.NDArray[np.bool_], k: int) -> None:
        if not done.any():
            return
        fl = self._flight
        rep = fl.rep[done]
        self._kv_reserved = self._kv_reserved - np.bincount(
            rep, weights=fl.prompt[done] + fl.output[done], minlength=k)
        self._seqs = self._seqs - np.bincount(rep, minlength=k)
        self._finished += int(rep.size)
        self._flight = fl.select(~done)

    # ----------------------------------------------------------------- outputs

    @property
    def queued(self) -> int:
        """Requests that have arrived and wait in the fleet queue."""
        table = self._table
        arrived = int(np.searchsorted(table.arrival[self._next:table.n], self._now, "right"))
        return len(self._head) + arrived

    @property
    def in_flight(self) -> int:
        return int(self._flight.rid.size)

    @property
    def unfinished(self) -> int:
        """Requests added (not rejected) that have not finished: queued, future or in flight."""
        return self._table.n - self._finished

    @property
    def served_tokens(self) -> ServedTokens:
        return ServedTokens(self._served_prompt, self._served_generation)

    def loads(self) -> dict[str, ReplicaLoad]:
        """Per ready replica: waiting (fleet queue spread evenly), running, KV-cache use."""
        k = len(self._ids)
        if not k:
            return {}
        fl = self._flight
        waiting = self.queued / k
        running = np.bincount(fl.rep, minlength=k)
        pf = self._pf_done[fl.rep]
        cached = np.clip(pf - (fl.pf_end - fl.prompt), 0.0, fl.prompt) + fl.gen
        usage = np.bincount(fl.rep, weights=cached, minlength=k) / self.profile.kv_cache_tokens
        return {rid: ReplicaLoad(waiting, float(running[j]), min(1.0, float(usage[j])))
                for j, rid in enumerate(self._ids)}

    def results(self) -> RequestResults:
        """Every added request so far, in arrival order."""
        t = self._table
        n = t.n
        arrival = t.arrival[:n].copy()
        return RequestResults(arrival, t.prompt[:n].copy(), t.output[:n].copy(),
                              t.admit[:n] - arrival, t.first[:n] - arrival, t.finish[:n].copy())

    @property
    def completed(self) -> RequestResults:
        """Finished requests only."""
        res = self.results()
        keep = ~np.isnan(res.finish_s)
        return RequestResults(res.arrival_s[keep], res.prompt_tokens[keep],
                              res.output_tokens[keep], res.queue_s[keep], res.ttft_s[keep],
                              res.finish_s[keep])


# --------------------------------------------------------------------------- fluid


@dataclass(frozen=True)
class FluidTick:
    """One fluid tick: request counts, utilisation, this tick's arrivals' TTFT, replica load."""

    arrivals: float
    served: float
    backlog: float
    utilisation: float
    ttft_p50_s: float
    ttft_p95_s: float
    ttft_p99_s: float
    slo_fraction: float
    load: ReplicaLoad


@dataclass(frozen=True)
class _Wait:
    """Wait distribution: fluid part (prob ``fluid`` uniform on [lo, hi], else 0) plus an
    independent queueing part (prob ``pw`` Exp(``theta``), else 0). ``lo = inf``: no capacity."""

    fluid: float
    lo: float
    hi: float
    pw: float
    theta: float

    def _g(self, y: float) -> float:
        if y < 0:
            return 0.0
        return 1.0 - self.pw * math.exp(-self.theta * y) if self.pw > 0 else 1.0

    def _ig(self, y: float) -> float:
        """Integral of ``_g`` from 0 to ``y``."""
        if y <= 0:
            return 0.0
        if self.pw <= 0:
            return y
        return y - self.pw / self.theta * -math.expm1(-self.theta * y)

    def cdf(self, x: float) -> float:
        if math.isinf(self.lo):
            return 0.0
        queue_only = (1.0 - self.fluid) * self._g(x)
        if self.fluid <= 0:
            return queue_only
        width = self.hi - self.lo
        if width <= _TIME_EPS:
            return queue_only + self.fluid * self._g(x - self.lo)
        return queue_only + self.fluid * (self._ig(x - self.lo) - self._ig(x - self.hi)) / width

    def pdf(self, x: float) -> float:
        if x <= 0 or math.isinf(self.lo):
            return 0.0
        dens = (1.0 - self.fluid) * self.pw * self.theta * math.exp(-self.theta * x)
        width = self.hi - self.lo
        if self.fluid > 0 and width > _TIME_EPS:
            dens += self.fluid * (self._g(x - self.lo) - self._g(x - self.hi)) / width
        elif self.fluid > 0 and x > self.lo:
            dens += self.fluid * self.pw * self.theta * math.exp(-self.theta * (x - self.lo))
        return dens

    def _queue_quantile(self, q: float) -> float:
        if q <= 1.0 - self.pw:
            return 0.0
        return math.log(self.pw / (1.0 - q)) / self.theta

    def _fluid_quantile(self, q: float) -> float:
        if q <= 1.0 - self.fluid:
            return 0.0
        return self.lo + (q - (1.0 - self.fluid)) / self.fluid * (self.hi - self.lo)

    def quantile(self, q: float) -> float:
        if math.isinf(self.lo):
            return math.inf
        if self.fluid <= 0:
            return self._queue_quantile(q)
        if self.pw <= 0:
            return self._fluid_quantile(q)
        if self.cdf(0.0) >= q:
            return 0.0
        tail = 1.0 - (1.0 - q) / 2.0  # Q(X+Y, q) <= Q(X, tail) + Q(Y, tail)
        return self._solve(q, 0.0, self._fluid_quantile(tail) + self._queue_quantile(tail))

    def _solve(self, q: float, low: float, high: float) -> float:
        """Safeguarded Newton on the CDF within the bracket [low, high] (CDF(high) >= q).

        The CDF jumps where the distribution has an atom, so when the bracket closes without
        a root the answer is its upper end, the smallest point known to reach ``q``.
        """
        x = (self._fluid_quantile(q) + self._queue_quantile(q) + high) / 2.0
        for _ in range(100):
            err = self.cdf(x) - q
            if abs(err) < 1e-10:
                return x
            if high - low < 1e-9 * (1.0 + high):
                return high
            if err > 0:
                high = x
            else:
                low = x
            dens = self.pdf(x)
            nxt = x - err / dens if dens > 0 else low - 1.0
            x = nxt if low < nxt < high else (low + high) / 2.0
        return high


def erlang_c(servers: int, offered: float) -> float:
    """Probability of waiting in M/M/c with ``servers`` servers and ``offered`` Erlangs."""
    if offered <= 0:
        return 0.0
    if offered >= servers:
        return 1.0
    if servers <= 32:
        blocking = 1.0
        for k in range(1, servers + 1):
            blocking = offered * blocking / (k + offered * blocking)
    else:
        log_pmf = servers * math.log(offered) - offered - math.lgamma(servers + 1)
        blocking = math.exp(log_pmf) / float(pdtr(servers, offered))
    rho = offered / servers
    return blocking / (1.0 - rho * (1.0 - blocking))


class FluidFleet:
    """Per-tick fluid model of a fleet (model and assumptions in the module docstring)."""

    def __init__(self, profile: ReplicaProfile, *, tick_s: float = 10.0,
                 slo_ttft_s: float = 2.0, servers_per_replica: int = 1) -> None:
        if not (math.isfinite(tick_s) and tick_s > 0):
            raise ValueError(f"tick_s must be > 0, got {tick_s!r}")
        if not (math.isfinite(slo_ttft_s) and slo_ttft_s > 0):
            raise ValueError(f"slo_ttft_s must be > 0, got {slo_ttft_s!r}")
        if servers_per_replica < 1:
            raise ValueError(f"servers_per_replica must be >= 1, got {servers_per_replica!r}")
        self.profile = profile
        self.tick_s = float(tick_s)
        self.slo_ttft_s = float(slo_ttft_s)
        self.servers_per_replica = int(servers_per_replica)
        self.backlog = 0.0
        self.arrived_total = 0.0
        self.served_total = 0.0
        self._slo_met = 0.0
        self._lengths: tuple[float, float] = (math.nan, math.nan)
        self._mu = 0.0
        self._history: list[tuple[float, float, float, float, float, float, float]] = []

    def _rate_per_replica(self, mean_prompt: float, mean_output: float) -> float:
        if (mean_prompt, mean_output) != self._lengths:
            self._mu = self.profile.saturated_request_rate(mean_prompt, mean_output)
            self._lengths = (mean_prompt, mean_output)
        return self._mu

    def step(self, *, rate: float, mean_prompt: float, mean_output: float,
             ready_replicas: int) -> FluidTick:
        """Advance one tick at ``rate`` requests/s with ``ready_replicas`` serving."""
        if not (math.isfinite(rate) and rate >= 0):
            raise ValueError(f"rate must be a finite number >= 0, got {rate!r}")
        if ready_replicas < 0:
            raise ValueError(f"ready_replicas must be >= 0, got {ready_replicas!r}")
        mu = self._rate_per_replica(mean_prompt, mean_output)
        capacity = ready_replicas * mu
        tick = self.tick_s
        arrivals = rate * tick
        backlog0 = self.backlog
        served = min(backlog0 + arrivals, capacity * tick)
        self.backlog = max(0.0, backlog0 + arrivals - served)
        self.arrived_total += arrivals
        self.served_total += served
        per_replica = served / tick / ready_replicas if ready_replicas else 0.0
        batch, step_s = self._batch(per_replica, mean_prompt, mean_output)
        base = self.profile.prefill_s(mean_prompt) + step_s
        wait = self._wait(rate, capacity, backlog0, ready_replicas)
        slo = min(1.0, wait.cdf(self.slo_ttft_s - base)) if self.slo_ttft_s >= base else 0.0
        self._slo_met += arrivals * slo
        self._history.append((arrivals, base, wait.fluid, wait.lo, wait.hi, wait.pw, wait.theta))
        return FluidTick(
            arrivals=arrivals,
            served=served,
            backlog=self.backlog,
            utilisation=min(1.0, served / (capacity * tick)) if capacity > 0 else 0.0,
            ttft_p50_s=base + wait.quantile(0.50),
            ttft_p95_s=base + wait.quantile(0.95),
            ttft_p99_s=base + wait.quantile(0.99),
            slo_fraction=slo,
            load=self._load(ready_replicas, batch, per_replica, mean_prompt, mean_output,
                            wait, rate, capacity),
        )

    def _batch(self, per_replica: float, p: float, o: float) -> tuple[float, float]:
        """Decoding batch at ``per_replica`` req/s (Little's law) and its decode step time."""
        prof = self.profile
        a0 = prof.decode_step_base_s
        a1 = prof.decode_step_per_seq_s + prof.decode_step_per_cached_token_s * (p + o / 2.0)
        b_max = prof.max_batch(p, o)
        denom = 1.0 - per_replica * prof.prefill_s(p) - per_replica * o * a1
        batch = b_max if denom <= 0 else min(b_max, per_replica * o * a0 / denom)
        return batch, a0 + a1 * batch

    def _wait(self, rate: float, capacity: float, backlog0: float, replicas: int) -> _Wait:
        if capacity <= 0:
            return _Wait(1.0, math.inf, math.inf, 1.0, 0.0)
        rho = min(rate / capacity, RHO_CAP)
        servers = replicas * self.servers_per_replica
        pw = erlang_c(servers, rho * servers)
        theta = capacity * (1.0 - rho)
        w0 = backlog0 / capacity
        w_end = w0 + (rate - capacity) / capacity * self.tick_s
        if w0 <= 0 and w_end <= 0:
            return _Wait(0.0, 0.0, 0.0, pw, theta)
        if w_end >= 0:
            return _Wait(1.0, min(w0, w_end), max(w0, w_end), pw, theta)
        drained = w0 / (w0 - w_end)  # share of the tick before the backlog is gone
        return _Wait(drained, 0.0, w0, pw, theta)

    def _load(self, replicas: int, batch: float, per_replica: float, p: float, o: float,
              wait: _Wait, rate: float, capacity: float) -> ReplicaLoad:
        if not replicas:
            return ReplicaLoad(self.backlog, 0.0, 0.0)
        rho = min(rate / capacity, RHO_CAP) if capacity > 0 else 0.0
        queue = wait.pw * rho / (1.0 - rho)
        prefilling = per_replica * self.profile.prefill_s(p)
        running = min(float(self.profile.max_num_seqs), batch + prefilling)
        usage = min(1.0, batch * (p + o / 2.0) / self.profile.kv_cache_tokens)
        return ReplicaLoad((self.backlog + queue) / replicas, running, usage)

    # ----------------------------------------------------------------- run totals

    @property
    def slo_attainment(self) -> float:
        """Share of all arrivals so far with TTFT <= the SLO (1.0 before any arrival)."""
        return self._slo_met / self.arrived_total if self.arrived_total > 0 else 1.0

    def ttft_quantiles(self, qs: Sequence[float]) -> FloatArray:
        """Run-wide TTFT quantiles: each tick's distribution weighted by its arrivals.

        ``inf`` where the quantile falls among requests that met no capacity; NaN before any
        arrival.
        """
        rows = np.asarray(self._history, dtype=np.float64).reshape(-1, 7)
        rows = rows[rows[:, 0] > 0]
        if not rows.size:
            return np.full(len(qs), math.nan)
        weight = rows[:, 0] / rows[:, 0].sum()
        return np.asarray([_mixture_quantile(q, weight, rows) for q in qs])


def _mixture_cdf(x: float, weight: FloatArray, rows: FloatArray) -> float:
    """Arrival-weighted CDF of TTFT over ticks (vectorised ``_Wait.cdf`` shifted by base)."""
    base, fluid, lo, hi, pw, theta = (rows[:, i] for i in range(1, 7))
    finite = np.isfinite(lo)
    y = x - base
    lo = np.where(finite, lo, 0.0)
    hi = np.where(finite, hi, 0.0)
    safe_theta = np.where(theta > 0, theta, 1.0)

    def g(v: FloatArray) -> FloatArray:
        out: FloatArray = np.where(v < 0, 0.0, 1.0 - pw * np.exp(-safe_theta * np.maximum(v, 0.0)))
        return out

    def ig(v: FloatArray) -> FloatArray:
        vp = np.maximum(v, 0.0)
        out: FloatArray = vp - pw / safe_theta * -np.expm1(-safe_theta * vp)
        return out

    width = hi - lo
    wide = width > _TIME_EPS
    spread = np.where(wide, (ig(y - lo) - ig(y - hi)) / np.where(wide, width, 1.0), g(y - lo))
    cdf = (1.0 - fluid) * g(y) + fluid * spread
    return float(np.sum(weight * np.where(finite, cdf, 0.0)))


def _mixture_quantile(q: float, weight: FloatArray, rows: FloatArray) -> float:
    if _mixture_cdf(_HORIZON_S, weight, rows) < q - 1e-12:
        return math.inf
    low, high = 0.0, 1.0
    while _mixture_cdf(high, weight, rows) < q:
        high *= 2.0
    for _ in range(60):
        mid = (low + high) / 2.0
        if _mixture_cdf(mid, weight, rows) < q:
            low = mid
        else:
            high = mid
        if high - low < 1e-6 * (1.0 + high):
            break
    return high
