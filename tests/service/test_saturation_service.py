"""Saturation is evidence, with or without GPU data: emulated vLLM pods over real HTTP.

A pod whose queue stays non-empty for 3 scrapes over 10 s while it completes requests (or that
has requests waiting on a KV cache >= 90% full) is at capacity: what it serves corrects the
capacity model, and the predictive answer never goes below what that throughput needs for
the demand seen plus the queue. GPU data, where there is some, still tells a stall from it.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from scaler.config.profiles import default_profile
from scaler.model.observe import fleet_state
from scaler.sim.emulation.engine_state import EngineState
from scaler.sim.emulation.pod_server import EmulatedVllmPod

PROMPT, OUTPUT = 1000, 200


def at_capacity(pod: EmulatedVllmPod, *, waiting: int = 40, kv: float = 0.97,
                engines: int = 2) -> None:
    """A pod of ``engines`` data-parallel engines with ``waiting`` requests queued in all."""
    pod.engines = [EngineState(waiting=waiting // engines, running=64, kv_cache_usage=kv)
                   for _ in range(engines)]


def complete(pod: EmulatedVllmPod, count: float) -> None:
    """``count`` requests of PROMPT + OUTPUT tokens finish, spread over the pod's engines."""
    for engine in pod.engines:
        share = count / len(pod.engines)
        engine.request_success["stop"] += share
        engine.prompt_tokens += PROMPT * share
        engine.generation_tokens += OUTPUT * share


async def serve(service, workload, fleet: Sequence[EmulatedVllmPod], *, rate: float,
                seconds: float = 15) -> None:
    """Each pod completes ``rate`` requests/s for ``seconds`` (its queue unchanged), a scrape."""
    for pod in fleet:
        complete(pod, rate * seconds)
    service.clock.advance(seconds)
    await service.scrape(workload)


async def test_the_issues_saturated_fleet_without_gpu_data_scales_up_and_never_down(
        service, pods):
    """Two pods, 40 waiting each on two engines, KV 97%, 5 req/s of 1,000 + 200 tokens each,
    the queue never draining, no dcgm, the default policy: 3 replicas at least within 45 s,
    and never fewer, past the scale-down window."""
    fleet = [await pods() for _ in range(2)]
    for pod in fleet:
        at_capacity(pod)
    workload = service.resolve("ns", "so", {"endpoints": ",".join(p.url for p in fleet)})
    await service.scrape(workload)
    for _ in range(3):  # 45 s
        await serve(service, workload, fleet, rate=5)
    decision = service.answer(workload).decision
    assert decision.desired_replicas >= 3, decision.reason
    assert "saturated" in decision.reason
    for _ in range(30):  # 450 s more, past the 300 s scale-down window
        await serve(service, workload, fleet, rate=5)
        decision = service.answer(workload).decision
        assert decision.desired_replicas >= 3, decision.reason


async def test_a_queue_held_three_scrapes_is_saturation_without_a_full_kv_cache(service, pods):
    """KV-cache at 50%: the queue alone, held over 3 scrapes spanning 10 s or more, with
    requests completing, is the evidence; two scrapes are not yet."""
    fleet = [await pods() for _ in range(2)]
    for pod in fleet:
        at_capacity(pod, kv=0.5)
    workload = service.resolve("ns", "so", {"endpoints": ",".join(p.url for p in fleet)})
    await service.scrape(workload)
    await serve(service, workload, fleet, rate=5)
    assert service.answer(workload).decision.desired_replicas <= 2  # a burst, so far
    await serve(service, workload, fleet, rate=5)
    decision = service.answer(workload).decision
    assert decision.desired_replicas >= 3, decision.reason


@pytest.mark.parametrize("gpu", ["no GPU data", "busy GPU"])
async def test_a_pod_far_slower_than_its_profile_corrects_capacity_within_three_windows(
        service, pods, dcgm, gpu):
    """True capacity 0.3x the profile's: within 20% of it within 3 rate windows (180 s), and
    one noisy scrape (a burst of completions) does not move it out again."""
    truth = 0.3
    served = truth * default_profile().saturated_request_rate(PROMPT, OUTPUT)
    pod = await pods()
    at_capacity(pod, waiting=12, kv=0.6, engines=1)  # the queue is the only evidence
    metadata = {"endpoints": f"vllm-0={pod.url}"}
    if gpu == "busy GPU":
        metadata["gpuEndpoints"] = dcgm[0]
    workload = service.resolve("ns", "so", metadata)
    assert workload.planner is not None
    capacity = workload.planner.capacity
    await service.scrape(workload)
    for _ in range(12):  # 180 s
        await serve(service, workload, [pod], rate=served)
    assert capacity.correction == pytest.approx(truth, rel=0.2)
    complete(pod, 6 * served * 15)  # one scrape sees 6 times the completions
    await serve(service, workload, [pod], rate=served)
    for _ in range(20):
        assert capacity.correction == pytest.approx(truth, rel=0.2)
        await serve(service, workload, [pod], rate=served)


async def test_a_queue_with_nothing_completing_is_a_stall_not_demand_nor_capacity(service,
                                                                                  pods):
    """No GPU data: a queue that grows for a whole rate window while nothing completes is a
    stuck engine; its queue is no demand, and it teaches the capacity model nothing."""
    pod = await pods()
    engine = EngineState(waiting=4, running=8, kv_cache_usage=0.95)
    pod.engines = [engine]
    workload = service.resolve("ns", "so", {"endpoints": f"vllm-0={pod.url}"})
    assert workload.planner is not None
    await service.scrape(workload)
    for _ in range(6):
        engine.waiting += 5
        await serve(service, workload, [pod], rate=0, seconds=10)
    (state,) = workload.pods.values()
    assert state.unhealthy
    state_now = fleet_state(workload, service.clock.monotonic(), 15)
    assert (state_now.backlog, state_now.observed_rate) == (0, 0.0)  # its growth is no arrival
    assert workload.planner.capacity.correction == 1.0


async def test_an_idle_gpu_tells_a_stall_from_saturation(service, pods, dcgm):
    """Queue held, KV-cache full, requests completing, but dcgm says the GPU idles: not at
    capacity (no correction, no throughput floor)."""
    url, gpu = dcgm
    gpu["active"] = 0.01
    pod = await pods()
    at_capacity(pod, waiting=12, engines=1)
    workload = service.resolve("ns", "so", {"endpoints": f"vllm-0={pod.url}",
                                            "gpuEndpoints": url})
    assert workload.planner is not None
    await service.scrape(workload)
    for _ in range(12):
        await serve(service, workload, [pod], rate=1)
    assert workload.planner.capacity.correction == 1.0
    assert service.answer(workload).decision.desired_replicas == 1
