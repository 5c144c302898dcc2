"""The demo's emulated vLLM pods: one per ready replica, fed from the fluid fleet's ticks.

Each ready replica of a demo side is one ``EmulatedVllmPod`` (a real aiohttp server serving
vLLM 0.12 ``/metrics``): started when the replica becomes ready, stopped once the service no
longer scrapes it. Per step, the fleet's per-replica load (waiting, running, KV-cache use) is
written into every ready pod, the token and request counters advance with what was served,
and a few TTFT observations spread over the tick's p50/p95/p99 go into the histograms, so
every signal the service reads is live.
"""

from __future__ import annotations

import asyncio

from scaler.model.profile import ReplicaProfile
from scaler.model.queueing import FluidTick
from scaler.sim.emulation.live_fleet import ttft_samples
from scaler.sim.emulation.pod_server import EmulatedVllmPod

__all__ = ["VLLM_VERSION", "Pods"]

VLLM_VERSION = "0.12"



class Pods:
    """One emulated vLLM pod per ready replica, fed from the fluid fleet's ticks."""

    def __init__(self, profile: ReplicaProfile) -> None:
        self.profile = profile
        self.starts: list[tuple[float, str]] = []  # (sim time, replica id)
        self.stops: list[tuple[float, str]] = []
        self.by_id: dict[str, EmulatedVllmPod] = {}
        self.leaving: list[EmulatedVllmPod] = []

    def __len__(self) -> int:
        return len(self.by_id)

    @property
    def endpoints(self) -> str:
        return ",".join(pod.url for pod in self.by_id.values())

    async def sync(self, ready_ids: list[str], now_s: float) -> None:
        """Start pods for newly ready replicas; set aside those of removed ones.

        A removed replica serves no more, but its page stays up (frozen, like a terminating
        pod finishing its requests) until the next poll has taken it out of ``endpoints``;
        stopping it at once would have the service scrape a closed port until then.
        """
        wanted = set(ready_ids)
        for rid in [r for r in self.by_id if r not in wanted]:
            self.leaving.append(self.by_id.pop(rid))
            self.stops.append((now_s, rid))
        for rid in ready_ids:
            if rid not in self.by_id:
                pod = EmulatedVllmPod(version=VLLM_VERSION)
                await pod.start()
                self.by_id[rid] = pod
                self.starts.append((now_s, rid))

    async def retire(self) -> None:
        """Stop the pods set aside (call once ``endpoints`` without them reached the service)."""
        leaving, self.leaving = self.leaving, []
        await asyncio.gather(*(pod.stop() for pod in leaving), return_exceptions=True)

    def serve(self, tick: FluidTick, prompt: float, output: float) -> None:
        """Write one tick's load, served requests and TTFTs into every ready pod."""
        if not self.by_id:
            return
        served = tick.served / len(self.by_id)
        ttfts = ttft_samples(tick) if served > 0 else []
        decode_s = self.profile.decode_step_s(tick.load.running,
                                              tick.load.running * (prompt + output / 2))
        prefill_s = self.profile.prefill_s(prompt)
        for pod in self.by_id.values():
            engine = pod.engines[0]
            engine.waiting = round(tick.load.waiting)
            engine.running = round(tick.load.running)
            engine.kv_cache_usage = tick.load.kv_cache_usage
            engine.prompt_tokens += served * prompt
            engine.generation_tokens += served * output
            finished = engine.request_success.get("stop", 0.0) + served
            for ttft in ttfts:
                engine.record_request(
                    prompt_tokens=round(prompt), generation_tokens=round(output),
                    queue_s=max(0.0, ttft - prefill_s - decode_s), ttft_s=ttft,
                    e2e_s=ttft + output * decode_s)
            engine.request_success["stop"] = finished  # the true count, not the samples

    async def stop_all(self) -> None:
        self.leaving += self.by_id.values()
        self.by_id = {}
        await self.retire()

