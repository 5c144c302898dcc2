"""Request-level simulated vLLM fleet for the what-if replay (request traces).

Pure and deterministic: no clock, no I/O, no randomness. Replica start-up, node provisioning
and GPU-hour accounting belong to the replay engine; the fleet only sees the replicas that are
ready to serve. Per-replica performance comes from a
:class:`~scaler.model.profile.ReplicaProfile`.

Requests wait in one fleet-wide FIFO queue. At the start of every tick of ``tick_s`` the
head of the queue is admitted to the ready replica with the most free KV-cache tokens, as
long as that replica has room for the whole ``prompt + output`` (reserved at admission,
released at finish: a conservative stand-in for vLLM's on-demand blocks, since preemption is
not modelled) and a free sequence slot (``max_num_seqs``); a head that fits nowhere blocks
the queue (FCFS, as vLLM). A replica also admits at most ``max_requests_per_s`` requests per
second (its API server's ceiling, ``ReplicaProfile``): each earns that many admissions per
second of simulated time, banked up to one tick's worth plus one. A request whose
``prompt + output`` exceeds the KV cache can never run: ``add_arrivals`` counts it in
``rejected`` and drops it (vLLM rejects it at ``max_model_len``).

Each replica runs continuous batching with chunked prefill, evaluated per tick in closed form
(:mod:`scaler.sim.batching`); per-request stage times are kept in a
:class:`~scaler.sim.request_table.RequestTable`.

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

The fluid counterpart for rate series, also used by the live capacity model, is
:mod:`scaler.model.queueing`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from scaler.model.profile import ReplicaProfile
from scaler.model.queueing import ReplicaLoad
from scaler.sim.batching import EPS, InFlight, record_times, tick_phases
from scaler.sim.pages import PodPage
from scaler.sim.request_table import RequestResults, RequestTable
from scaler.sim.traces import RequestTrace

__all__ = ["RequestFleet", "ServedTokens", "fleet_pages"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
_T = TypeVar("_T", bound=np.generic)

_TIME_EPS = 1e-9     # seconds


@dataclass(frozen=True)
class ServedTokens:
    """Tokens processed so far (prefilled prompt tokens, generated tokens)."""

    prompt: float
    generation: float


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
        self._table = RequestTable()
        self._next = 0
        self._head: deque[int] = deque()
        self._ids: list[str] = []
        self._pf_admitted = np.zeros(0)
        self._pf_done = np.zeros(0)
        self._kv_reserved = np.zeros(0)
        self._seqs = np.zeros(0, dtype=np.int64)
        self._credit = np.zeros(0)  # admissions each replica's API server may still take
        self._credit_s = 0.0  # when the credit was last topped up
        self._flight = InFlight.empty()
        self._served_prompt = 0.0
        self._served_generation = 0.0
        self._finished = 0
        # Per ready replica, since it joined: completions, prompt and generated tokens, GPU
        # busy seconds (what its /metrics and dcgm pages count; ``fleet_pages``).
        self._counted = np.zeros((0, 4))

    # ----------------------------------------------------------------- inputs

    @property
    def now_s(self) -> float:
        return self._now

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
        self._pf_admitted = _remap(self._pf_admitted, ids, old_index)
        self._pf_done = _remap(self._pf_done, ids, old_index)
        self._kv_reserved = _remap(self._kv_reserved, ids, old_index)
        self._seqs = _remap(self._seqs, ids, old_index)
        self._counted = _remap(self._counted, ids, old_index)
        self._credit = _remap(self._credit, ids, old_index)
        self._ids = ids

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
                    # head >= end: at least one tick, whatever the division rounds to
                    skip = max(1, math.floor((head - self._now) / self.tick_s)) * self.tick_s
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
        self._credit = _topped_up(self._credit, prof.max_requests_per_s, self.tick_s,
                                  end - self._credit_s)
        self._credit_s = end
        credit = self._credit.tolist()
        free = (prof.kv_cache_tokens - self._kv_reserved).tolist()
        seqs = self._seqs.tolist()
        pf_admitted = self._pf_admitted.tolist()
        idle = (self._pf_admitted - self._pf_done <= EPS).tolist()
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
                if seqs[j] < prof.max_num_seqs and credit[j] >= 1.0 \
                        and free[j] >= prompt + output > 0 and free[j] > best_free:
                    best, best_free = j, free[j]
            if best < 0:
                break
            self._pop_head()
            if idle[best]:
                offsets[best] = max(0.0, arrival - start)
                idle[best] = False
            free[best] -= prompt + output
            seqs[best] += 1
            credit[best] -= 1.0
            pf_admitted[best] += prompt
            table.admit[rid] = max(arrival, start)
            rids.append(rid)
            reps.append(best)
            prompts.append(prompt)
            outputs.append(output)
            ends.append(pf_admitted[best])
        self._credit = np.asarray(credit)
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
        decoding0 = fl.pf_end <= pf_start + EPS
        phases, pf_after, decoding_new = tick_phases(self.profile, end - start, offsets, fl,
                                                     prefilled, decoding0, k,
                                                     self._pf_admitted, self._pf_done)
        step_start = np.where(
            decoding_new, phases.g_off[fl.rep] + (fl.pf_end - pf_start) / phases.chunk[fl.rep],
            0.0)
        gain = np.where(decoding0 | decoding_new, phases.g_end[fl.rep] - step_start, 0.0)
        gen = np.minimum(fl.gen + gain, fl.output)
        record_times(self._table, start, phases, step_start, gen, fl)
        self._served_prompt += float(np.sum(pf_after - self._pf_done))
        self._served_generation += float(np.sum(gen - fl.gen))
        self._counted[:, 1] += pf_after - self._pf_done
        self._counted[:, 2] += np.bincount(fl.rep, weights=gen - fl.gen, minlength=k)
        self._counted[:, 3] += (np.bincount(fl.rep, minlength=k) > 0) * (end - start)
        self._pf_done = pf_after
        fl.gen = gen
        self._retire(fl.output - gen <= EPS, k)


    def _retire(self, done: npt.NDArray[np.bool_], k: int) -> None:
        if not done.any():
            return
        fl = self._flight
        rep = fl.rep[done]
        self._kv_reserved = self._kv_reserved - np.bincount(
            rep, weights=fl.prompt[done] + fl.output[done], minlength=k)
        self._seqs = self._seqs - np.bincount(rep, minlength=k)
        self._counted[:, 0] += np.bincount(rep, minlength=k)
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


def fleet_pages(fleet: RequestFleet) -> dict[str, PodPage]:
    """Per ready replica, what its /metrics and dcgm pages read (``scaler.sim.pages``): its
    ``loads`` plus its counters since it joined."""
    return {rid: PodPage(load.waiting, load.running, load.kv_cache_usage,
                         *(float(v) for v in fleet._counted[j]))
            for j, (rid, load) in enumerate(fleet.loads().items())}


def _topped_up(credit: FloatArray, rate: float, tick_s: float, elapsed_s: float) -> FloatArray:
    """Each replica's admissions left after ``elapsed_s`` more seconds at ``rate`` per second,
    banked up to one tick's worth plus one (so a fractional remainder carries over and the
    long-run rate is the ceiling, not its floor per tick)."""
    return np.minimum(rate * tick_s + 1.0, credit + rate * max(0.0, elapsed_s))


def _remap(values: npt.NDArray[_T], ids: list[str], old_index: dict[str, int]) -> npt.NDArray[_T]:
    """Per-replica values (rows) re-indexed for the new replica list (zero for a newcomer)."""
    out = np.zeros((len(ids), *values.shape[1:]), dtype=values.dtype)
    for j, rid in enumerate(ids):
        if rid in old_index:
            out[j] = values[old_index[rid]]
    return out
