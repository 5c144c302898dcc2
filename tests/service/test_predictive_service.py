"""The service's predictive policy on emulated pods: arrivals, capacity, metrics, opt-out."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from scaler.config.profiles import default_profile
from scaler.model.capacity import CapacityModel
from scaler.model.observe import fleet_state
from scaler.service.service import Unavailable
from scaler.sim.emulation.engine_state import EngineState


async def serve_traffic(service, pod, workload, *, rate: float, seconds: float = 10) -> None:
    """Requests finish at ``rate``/s (600-token prompts, 200-token outputs), then a scrape."""
    engine: EngineState = pod.engines[0]
    done = rate * seconds
    engine.request_success["stop"] += done
    engine.prompt_tokens += 600 * done
    engine.generation_tokens += 200 * done
    service.clock.advance(seconds)
    await service.scrape(workload)


async def test_arrivals_seen_in_counters_size_the_fleet_for_the_slo(service, pods):
    pod = await pods()
    pod.engines = [EngineState(running=40, kv_cache_usage=0.1)]
    workload = service.resolve("ns", "so", {"endpoints": pod.url})
    reactive = service.resolve("ns", "so-r", {"endpoints": pod.url, "policy": "reactive"})
    await service.scrape(workload)
    await service.scrape(reactive)
    for _ in range(7):  # past the 60 s rate window: the rate is 120 req/s throughout
        await serve_traffic(service, pod, workload, rate=120)
        await service.scrape(reactive)
    needed = CapacityModel(default_profile()).replicas_for(120, 600, 200)
    assert needed >= 4
    decision = service.answer(workload).decision
    assert decision.desired_replicas == needed
    assert "observed load" in decision.reason
    # The same pod under the reactive policy: KV-cache 0.1 and no queue ask for 1.
    assert service.answer(reactive).decision.desired_replicas == 1


@pytest.mark.parametrize(("metadata", "replicas_after_75s"), [
    ({}, 1),  # the default window, 300 s, still holds the pod
    ({"scaleDownWindowSeconds": "60"}, 0),
])
async def test_an_idle_pod_goes_after_the_workloads_scale_down_window(
        service, pods, metadata, replicas_after_75s):
    pod = await pods()
    pod.engines = [EngineState()]  # idle, and no demand forecast
    workload = service.resolve("ns", "so", {"endpoints": pod.url, **metadata})
    assert workload.planner is not None
    await service.scrape(workload)
    assert service.answer(workload).decision.desired_replicas == 1
    for _ in range(5):
        service.clock.advance(15)
        await service.scrape(workload)
    assert service.answer(workload).decision.desired_replicas == replicas_after_75s


async def test_forecast_and_plan_are_exposed_as_metrics(service, pods):
    pod = await pods()
    # A full batch at 50 req/s, as the profile has it (its time in the engine says no more).
    pod.engines = [EngineState(running=500, kv_cache_usage=0.1)]
    workload = service.resolve("ns", "so", {"endpoints": pod.url, "gpusPerNode": "4"})
    await service.scrape(workload)
    for _ in range(70):  # 700 s: the 300 s forecaster steps get fed
        await serve_traffic(service, pod, workload, rate=50)
    page = generate_latest(service.telemetry.registry).decode()
    samples = {(s.name, s.labels.get("bound") or s.labels.get("horizon") or ""): s.value
               for f in text_string_to_metric_families(page) for s in f.samples
               if s.name.startswith("scaler_workload_")}
    assert samples[("scaler_workload_observed_requests_per_second", "")] == pytest.approx(50)
    assert samples[("scaler_workload_forecast_requests_per_second", "mean")] == pytest.approx(
        50, rel=0.1)
    assert (samples[("scaler_workload_forecast_requests_per_second", "upper")]
            >= samples[("scaler_workload_forecast_requests_per_second", "mean")])
    assert samples[("scaler_workload_needed_replicas", "now")] >= 2
    assert samples[("scaler_workload_desired_nodes", "")] >= 1
    assert samples[("scaler_workload_replica_capacity_requests_per_second", "")] > 0
    assert samples[("scaler_workload_capacity_correction", "")] == 1.0
    get = service.telemetry.registry.get_sample_value
    key = {"namespace": "ns", "scaledobject": "so", "metric": "desired-replicas"}
    assert get("scaler_workload_replicas", key) == 1  # one pod behind static endpoints
    assert get("scaler_workload_slo_ttft_seconds", key) == 2.0
    assert get("scaler_workload_lead_time_seconds", {**key, "kind": "pod"}) == 180.0
    assert get("scaler_workload_lead_time_seconds", {**key, "kind": "node"}) == 900.0


async def test_no_forecast_yet_is_said_not_exported_as_zero(service, pods):
    """A steady 10 req/s just after start: no forecast gauge (absent, not 0), the reason says
    so, and the plan sizes for the demand it sees; once a forecaster step is fed, both appear."""
    pod = await pods()
    pod.engines = [EngineState(running=10, kv_cache_usage=0.1)]
    workload = service.resolve("ns", "so", {"endpoints": pod.url})
    await service.scrape(workload)
    for _ in range(10):  # 100 s: less than one 300 s forecaster step
        await serve_traffic(service, pod, workload, rate=10)
    get = service.telemetry.registry.get_sample_value
    key = {"namespace": "ns", "scaledobject": "so", "metric": "desired-replicas"}
    assert get("scaler_workload_forecast_requests_per_second", {**key, "bound": "mean"}) is None
    assert get("scaler_workload_forecast_requests_per_second", {**key, "bound": "upper"}) is None
    assert get("scaler_workload_observed_requests_per_second", key) == pytest.approx(10)
    assert workload.plan is not None and workload.decision is not None
    assert "no forecast yet" in workload.decision.reason
    assert workload.plan.need_ahead == workload.plan.need_now >= 1
    for _ in range(60):  # 600 s more: the forecaster has its first steps
        await serve_traffic(service, pod, workload, rate=10)
    assert get("scaler_workload_forecast_requests_per_second", {**key, "bound": "mean"}) == (
        pytest.approx(10, rel=0.2))
    assert "no forecast yet" not in workload.decision.reason


async def test_the_node_plan_is_held_by_the_planners_rules_in_the_service(service, pods):
    """The planner sees the nodes this workload's plan asked for, so pending pods and the node
    scale-down window hold them (a count of 0 would let every drop through at once)."""
    pod = await pods()
    pod.engines = [EngineState()]
    workload = service.resolve("ns", "so", {"endpoints": pod.url, "gpusPerNode": "1"})
    for _ in range(7):
        await serve_traffic(service, pod, workload, rate=120)
    assert workload.plan is not None and workload.plan.nodes >= 2
    busy_nodes = workload.plan.nodes
    assert fleet_state(workload, service.clock.monotonic(), 15).nodes == busy_nodes
    for _ in range(7):  # quiet for 70 s: replicas may go after their window, nodes stay
        await serve_traffic(service, pod, workload, rate=0)
    assert workload.plan.nodes == busy_nodes


async def test_the_forecasts_own_error_and_coverage_are_exposed(service, pods):
    pod = await pods()
    pod.engines = [EngineState()]
    workload = service.resolve("ns", "so", {"endpoints": pod.url})
    for _ in range(100):  # 1,000 s: three forecaster steps of 300 s, each scored by the next
        await serve_traffic(service, pod, workload, rate=40)
    assert workload.planner is not None and workload.planner.score.samples >= 2
    get = service.telemetry.registry.get_sample_value
    key = {"namespace": "ns", "scaledobject": "so", "metric": "desired-replicas"}
    error = get("scaler_workload_forecast_abs_error_requests_per_second", key)
    assert error == pytest.approx(workload.planner.score.abs_error) and error < 5
    assert get("scaler_workload_forecast_coverage", key) == workload.planner.score.coverage


async def test_arrivals_are_completions_plus_the_growth_of_requests_in_flight(service, pods):
    """vLLM exports no arrival counter: requests piling up in flight are arrivals too."""
    pod = await pods()
    engine = EngineState()
    pod.engines = [engine]
    workload = service.resolve("ns", "so", {"endpoints": pod.url})
    for _ in range(7):
        engine.running += 20  # 2 req/s more in flight, while 3 req/s complete
        await serve_traffic(service, pod, workload, rate=3)
    state = fleet_state(workload, service.clock.monotonic(), 15)
    assert state.observed_rate == pytest.approx(5.0)


async def test_saturated_throughput_corrects_capacity_after_warm_up(service, pods, dcgm):
    pod = await pods()
    pod.engines = [EngineState(waiting=6, running=200, kv_cache_usage=0.7)]
    url, _ = dcgm
    workload = service.resolve("ns", "so", {"endpoints": f"vllm-0={pod.url}",
                                            "gpuEndpoints": url})
    await service.scrape(workload)
    assert workload.planner is not None
    fast = 2 * default_profile().saturated_request_rate(600, 200)
    for _ in range(4):  # 40 s: still warming up, nothing learnt
        await serve_traffic(service, pod, workload, rate=fast)
    assert workload.planner.capacity.correction == 1.0
    for _ in range(30):
        await serve_traffic(service, pod, workload, rate=fast)
    assert workload.planner.capacity.correction > 1.5


async def test_an_idle_gpus_throughput_is_not_capacity(service, pods, dcgm):
    """A queue however long on a GPU dcgm reads idle is no saturation (without GPU data it is:
    tests/service/test_saturation_service.py)."""
    pod = await pods()
    pod.engines = [EngineState(waiting=6, running=200, kv_cache_usage=0.7)]
    url, state = dcgm
    state["active"] = 0.01
    workload = service.resolve("ns", "so", {"endpoints": f"vllm-0={pod.url}",
                                            "gpuEndpoints": url})
    fast = 2 * default_profile().saturated_request_rate(600, 200)
    for _ in range(34):
        await serve_traffic(service, pod, workload, rate=fast)
    assert workload.planner is not None
    assert workload.planner.capacity.correction == 1.0


async def test_a_queue_growing_on_an_idle_gpu_is_unhealthy_not_demand(service, pods, dcgm,
                                                                       caplog):
    import logging

    pod = await pods()
    url, gpu = dcgm
    gpu["active"] = 0.01
    engine = EngineState(waiting=1, running=0)
    pod.engines = [engine]
    workload = service.resolve("ns", "so", {"endpoints": f"vllm-0={pod.url}",
                                            "gpuEndpoints": url})
    caplog.set_level(logging.INFO, logger="scaler.service")
    for _ in range(8):
        engine.waiting += 5
        await serve_traffic(service, pod, workload, rate=0)
    (state,) = workload.pods.values()
    assert state.unhealthy
    warnings = [r for r in caplog.records if "unhealthy" in r.getMessage()]
    assert len(warnings) == 1
    assert fleet_state(workload, service.clock.monotonic(), 15).backlog == 0
    with pytest.raises(Unavailable, match=r"\(1 unhealthy: queue grows while the GPU idles"):
        service.answer(workload)  # its only pod: nothing left to decide from
    page = generate_latest(service.telemetry.registry).decode()
    assert 'scaler_workload_pods{metric="desired-replicas",namespace="ns",' \
           'scaledobject="so",state="unhealthy"} 1.0' in page
    gpu["active"] = 0.9
    await serve_traffic(service, pod, workload, rate=0)
    assert not state.unhealthy


async def test_a_stuck_pods_queue_does_not_scale_the_workload_up(service, pods, dcgm):
    """Its queue counts as missing, as the HPA counts an unready pod: no more replicas for it."""
    stuck, healthy = await pods(), await pods()
    _, gpu = dcgm
    gpu["active"] = 0.01  # vllm-0's GPU idles
    stuck.engines = [EngineState(waiting=1, running=0)]
    healthy.engines = [EngineState(waiting=0, running=3)]
    url, _ = dcgm
    workload = service.resolve("ns", "so", {  # the reactive rule is the one queues drive
        "endpoints": f"vllm-0={stuck.url},vllm-1={healthy.url}", "gpuEndpoints": url,
        "policy": "reactive"})
    for _ in range(8):
        stuck.engines[0].waiting += 5
        await serve_traffic(service, stuck, workload, rate=0)
    assert workload.pods[stuck.url].unhealthy
    decision = service.answer(workload).decision
    assert decision.desired_replicas <= 2, decision.reason  # 41 waiting would ask for 9
    assert "1 pod(s) without data" in decision.reason


async def test_is_active_turns_true_before_a_predicted_ramp(service, pods):
    """An idle workload whose history says traffic starts at 09:00 is active at 08:57."""
    import numpy as np

    pod = await pods()
    pod.engines = [EngineState()]  # idle: nothing waiting or running
    step, day = 300.0, 86400.0
    night = 7 * day + 3 * 3600  # 03:00 on day 8 of the history's clock
    service.clock.advance(night - service.clock.monotonic())
    times = np.arange(0.0, night, step)
    hours = (times % day) / 3600
    history = np.where((hours >= 9) & (hours < 17), 200.0, 0.0)
    workload = service.resolve("ns", "so", {"endpoints": pod.url})
    assert workload.planner is not None
    workload.planner.forecaster.warm_start(times, history)
    workload.planner.warm_started(float(times[-1]))

    await service.scrape(workload)
    restarted = service.answer(workload).decision  # a fresh planner holds what runs...
    assert (restarted.active, restarted.desired_replicas) == (True, 1)
    for _ in range(21):  # ...for the 300 s scale-down window, then lets the idle pod go
        service.clock.advance(15)
        await service.scrape(workload)
    at_night = service.answer(workload).decision
    assert (at_night.active, at_night.desired_replicas) == (False, 0)

    service.clock.advance(6 * 3600 - 150 - 21 * 15)  # 08:57:30, still no request anywhere
    await service.scrape(workload)
    early = service.answer(workload).decision
    assert early.active is True
    assert early.desired_replicas >= 2  # replicas started one pod lead time early
    assert "forecast" in early.reason


async def test_pods_that_stop_answering_never_scale_a_plan_down(service, pods):
    """Three of four pods go silent while still listed: the answer holds four replicas past the
    scale-down window, whatever the one pod still seen does: while it serves, the silent
    ones are assumed to carry its load; when it goes quiet too, the hold on missing data
    and the forecast both keep them (a quiet pod's zero is data, not a hole)."""
    running = [await pods() for _ in range(4)]
    for pod in running:
        pod.engines = [EngineState()]
    workload = service.resolve("ns", "so", {"endpoints": ",".join(p.url for p in running)})

    async def serve(pods_serving, rate: float = 20, seconds: float = 10) -> None:
        for pod in pods_serving:
            engine = pod.engines[0]
            engine.request_success["stop"] += rate * seconds
            engine.prompt_tokens += 600 * rate * seconds
            engine.generation_tokens += 200 * rate * seconds
        service.clock.advance(seconds)
        await service.scrape(workload)

    for _ in range(8):
        await serve(running)
    assert service.answer(workload).decision.desired_replicas >= 4
    for pod in running[1:]:
        await pod.stop()
    for _ in range(8):
        await serve(running[:1])
    state = fleet_state(workload, service.clock.monotonic(), 15)
    assert state.observed_rate == pytest.approx(80.0)  # 20 seen, x4 pods listed
    for _ in range(50):  # the one pod seen goes quiet for 500 s, past the scale-down window
        await serve(running[:1], rate=0)
    decision = service.answer(workload).decision
    assert decision.desired_replicas >= 4, decision.reason
    assert any("3 pod(s) without data" in p.detail for p in decision.proposals)
    assert workload.asked_nodes == decision.desired_nodes  # what the node pool counts


async def test_pods_on_their_first_page_add_no_imagined_demand(service, pods):
    """Pods that just became ready have no rate yet: they serve nothing so far, not the mean."""
    old = [await pods() for _ in range(2)]
    for pod in old:
        pod.engines = [EngineState()]
    urls = [p.url for p in old]
    workload = service.resolve("ns", "so", {"endpoints": ",".join(urls)})
    for _ in range(7):
        for pod in old:  # 10 req/s each
            pod.engines[0].request_success["stop"] += 100
        service.clock.advance(10)
        await service.scrape(workload)
    new = [await pods() for _ in range(8)]
    for pod in new:
        pod.engines = [EngineState()]
    service.resolve("ns", "so", {"endpoints": ",".join(urls + [p.url for p in new])})
    for pod in old:
        pod.engines[0].request_success["stop"] += 100
    service.clock.advance(10)
    await service.scrape(workload)
    state = fleet_state(workload, service.clock.monotonic(), 15)
    assert state.observed_rate == pytest.approx(20.0)
