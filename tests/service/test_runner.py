"""A workload's runner: its loop ends with the workload, each decision wakes the streams
waiting for it, and its pods come from static endpoints or the Kubernetes object named."""

from __future__ import annotations

import asyncio

import pytest

from scaler.service.runner import target_of
from scaler.service.workloads import Workload, WorkloadKey
from scaler.sim.emulation.engine_state import EngineState


async def test_a_decision_wakes_whoever_waits_for_the_next_one(service, pods):
    pod = await pods()
    workload = service.resolve("ns", "so", {"endpoints": pod.url})
    waiting = service.change_event(workload)
    assert not waiting.is_set()
    await service.scrape(workload)
    assert waiting.is_set()
    following = service.change_event(workload)
    assert following is not waiting and not following.is_set()  # the next decision's


async def test_the_loop_of_an_idle_workload_drops_it_and_ends(service, pods):
    pod = await pods()
    workload = service.resolve("ns", "so", {"endpoints": pod.url})
    runner = service.runners[workload.key]
    service.clock.advance(service.config.workloads.idle_timeout_s + 1)
    await asyncio.wait_for(runner.run(), 5)  # the first round finds it idle
    assert service.registry.get(workload.key) is None and not service.runners
    assert service.telemetry.registry.get_sample_value("scaler_workloads_dropped_total") == 1
    assert not service.change_event(workload).is_set()  # nothing will set it: no runner


async def test_the_loop_of_a_replaced_workload_ends_without_a_round(service, pods):
    pod = await pods()
    workload = service.resolve("ns", "so", {"endpoints": pod.url})
    runner = service.runners[workload.key]
    service.registry.remove(workload.key)
    await asyncio.wait_for(runner.run(), 5)
    assert pod.requests_served == 0


async def test_a_dropped_workload_can_still_be_scraped_by_hand(service, pods):
    pod = await pods()
    pod.engines = [EngineState(waiting=10)]
    workload = service.resolve("ns", "so", {"endpoints": pod.url, "policy": "reactive"})
    service.drop(workload)
    await service.scrape(workload)
    assert workload.decision is not None and workload.decision.desired_replicas == 2


@pytest.mark.parametrize(("metadata", "kind", "name", "selector", "namespace"), [
    ({"deployment": "llama"}, "Deployment", "llama", None, "ns"),
    ({"statefulSet": "llama", "podNamespace": "pods"}, "StatefulSet", "llama", None, "pods"),
    ({"labelSelector": "app=llama"}, "selector", "", "app=llama", "ns"),
])
def test_the_pods_come_from_the_kubernetes_object_named(service, metadata, kind, name,
                                                        selector, namespace):
    workload = Workload(WorkloadKey("ns", "so", "desired-replicas"),
                        service.spec_for({**metadata, "metricsPort": "9000"}), 0.0, 0.0, 60.0)
    target = target_of(workload)
    assert target is not None
    assert (target.kind, target.name, target.selector, target.namespace, target.port) == (
        kind, name, selector, namespace, 9000)


def test_static_endpoints_need_no_kubernetes_object(service):
    workload = service.resolve("ns", "so", {"endpoints": "http://127.0.0.1:9/metrics"})
    assert target_of(workload) is None
    assert workload.discovery is None
