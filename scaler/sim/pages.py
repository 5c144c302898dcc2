"""What a simulated pod's ``/metrics`` page and its GPU's dcgm-exporter page would read.

The scaler decides from pages, not from the simulator's truth: gauges (waiting, running,
KV-cache use), counters that only grow (completions, prompt and generated tokens, as vLLM's
``*_total``), and the GPU's busy time (dcgm-exporter's utilisation is the share of time a
kernel ran, so the scaler reads it as a fraction of the interval between two pages). A
saturated pod shows a queue and completes at its true rate; an idle one completes nothing
and reads ~0 GPU.

The request-level fleet counts per replica itself (``RequestFleet.pages``). The fluid fleet
serves in equal shares, so ``FluidPages`` keeps one running total per share and gives each
pod the part since it became ready: a new pod's counters start at zero, as a restarted
vLLM's do. Its pages show as waiting only its backlog, the requests beyond what the fleet
serves: vLLM admits every request its batch has room for (KV cache, ``max_num_seqs``), so
requests wait on a page only once the batch is full. (The fluid load's Erlang-C queue stands
for the TTFT delay of random arrivals below capacity; shown as waiting it would read a pod
at 85% of its throughput as saturated, and the capacity learnt from it 15% low. The reactive
policies still read that load, ``ReplicaLoad``, as before.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scaler.model.queueing import FluidTick


@dataclass(frozen=True)
class PodPage:
    """One pod's page at one instant (counters since the pod started)."""

    waiting: float
    running: float
    kv_cache_usage: float
    completed: float  # vllm:request_success_total
    prompt_tokens: float  # vllm:prompt_tokens_total
    generation_tokens: float  # vllm:generation_tokens_total
    gpu_busy_s: float | None  # seconds its GPU ran a batch; None: no dcgm data

    def without_gpu(self) -> PodPage:
        """The page with no GPU data (a cluster without dcgm-exporter)."""
        return PodPage(self.waiting, self.running, self.kv_cache_usage, self.completed,
                       self.prompt_tokens, self.generation_tokens, None)


def busy_share(running: float) -> float:
    """Share of time a replica with ``running`` requests on average has a batch on its GPU:
    with requests in flight independently (Poisson), ``P(at least one) = 1 - e^-running``."""
    return -math.expm1(-max(running, 0.0))


class FluidPages:
    """Per-pod pages of a fluid fleet (module docstring)."""

    def __init__(self) -> None:
        self._total = (0.0, 0.0, 0.0, 0.0)  # completed, prompt, generated, busy s: one share
        self._since: dict[str, tuple[float, float, float, float]] = {}
        self._tick: FluidTick | None = None

    def served(self, tick: FluidTick, *, ready: int, mean_prompt: float, mean_output: float,
               tick_s: float) -> None:
        """Count one fluid tick served by ``ready`` replicas."""
        self._tick = tick
        if ready <= 0:
            return
        share = tick.served / ready
        done, prompt, output, busy = self._total
        self._total = (done + share, prompt + share * mean_prompt,
                       output + share * mean_output, busy + tick_s * busy_share(tick.load.running))

    def pages(self, ready_ids: list[str]) -> dict[str, PodPage]:
        """Each ready pod's page now; a pod not seen before starts from zero."""
        self._since = {rid: self._since.get(rid, self._total) for rid in ready_ids}
        load = self._tick.load if self._tick is not None else None
        backlog = self._tick.backlog if self._tick is not None else 0.0
        out = {}
        for rid, base in self._since.items():
            done, prompt, output, busy = (t - b for t, b in zip(self._total, base, strict=True))
            out[rid] = PodPage(backlog / len(self._since), load.running if load else 0.0,
                               load.kv_cache_usage if load else 0.0, done, prompt, output, busy)
        return out
