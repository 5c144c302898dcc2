"""The replay's predictive policy and the service make one decision: the same pages at the
same times give the same plan, reason and capacity correction (emulated vLLM pods over real
HTTP for the service; the same numbers as the replay's simulated pages for the policy)."""

from __future__ import annotations

import math

from scaler.model.capacity import CapacityModel
from scaler.model.forecast.forecaster import DemandForecaster
from scaler.model.predictive import FORECAST_STEP_S
from scaler.sim.emulation.engine_state import EngineState
from scaler.sim.pages import PodPage
from scaler.sim.policies import ClusterView, PredictivePolicy
from scaler.sim.policies.view import PodLoad

PROMPT, OUTPUT = 1000, 200


def _phase(seconds: int) -> tuple[float, float, float, float]:
    """(waiting, running, KV use, requests/s) of each pod at ``seconds``: saturated for a
    minute and a half (a queue of 40 on a full cache), then well within capacity."""
    return (40.0, 128.0, 0.97, 5.0) if seconds < 90 else (0.0, 12.0, 0.3, 4.0)


async def test_the_replay_policy_decides_as_the_service(service, pods) -> None:
    fleet = [await pods() for _ in range(2)]
    workload = service.resolve("ns", "so", {"endpoints": ",".join(p.url for p in fleet)})
    planner = workload.planner
    policy = PredictivePolicy(
        knob_value=planner.settings.plan.headroom, settings=planner.settings,
        capacity=CapacityModel(planner.capacity.profile, slo_ttft_s=planner.capacity.slo_ttft_s,
                               slo_target=planner.capacity.slo_target),
        forecaster=DemandForecaster(FORECAST_STEP_S))
    done = 0.0
    corrections = set()
    for step in range(16):
        waiting, running, kv, rate = _phase(step * 15)
        if step:
            done += rate * 15
            service.clock.advance(15)
        for pod in fleet:
            pod.engines = [EngineState(waiting=waiting, running=running, kv_cache_usage=kv)]
            engine = pod.engines[0]
            engine.request_success["stop"] = done
            engine.prompt_tokens, engine.generation_tokens = PROMPT * done, OUTPUT * done
        await service.scrape(workload)
        page = PodPage(waiting, running, kv, done, PROMPT * done, OUTPUT * done, None)
        now = service.clock.monotonic()
        policy.decide(ClusterView(
            now, {f"pod-{i}": PodLoad(waiting, running, kv) for i in range(2)}, 2, 2, 0, 0,
            1, 1, math.nan, 0.0, 0.0, {f"pod-{i}": page for i in range(2)}))
        ours, theirs = policy.plan, workload.plan
        assert ours is not None and theirs is not None
        assert (ours.replicas, ours.need_now, ours.reason) == (
            theirs.replicas, theirs.need_now, theirs.reason), step
        assert policy.planner.capacity.correction == planner.capacity.correction
        corrections.add(round(planner.capacity.correction, 6))
    assert len(corrections) > 2  # both learnt, from saturation and then from load
