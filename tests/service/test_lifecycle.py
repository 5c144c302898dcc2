"""Workload registration, metadata updates and idle expiry."""

from __future__ import annotations

import asyncio
import dataclasses

from scaler.service.service import ScalerService
from tests.clock import ManualClock
from tests.conftest import make_config, wait_until


async def test_idle_workloads_are_dropped_after_the_timeout(pods):
    pod = await pods()
    config = make_config(interval_s=0.01)
    config = dataclasses.replace(config, workloads=dataclasses.replace(
        config.workloads, idle_timeout_s=600))
    clock = ManualClock()
    service = ScalerService(config, clock=clock)
    await service.start()
    try:
        service.resolve("ns", "so", {"endpoints": pod.url})
        clock.advance(599)
        await _loop_turns(service)
        assert len(service.registry) == 1
        clock.advance(2)
        await wait_until(lambda: len(service.registry) == 0)
        assert service.telemetry.registry.get_sample_value(
            "scaler_workloads_dropped_total") == 1
    finally:
        await service.stop()


async def test_metadata_change_keeps_history_of_unchanged_pods(pods):
    a, b = await pods(), await pods()
    service = ScalerService(make_config(), clock=ManualClock(), background=False)
    await service.start()
    try:
        workload = service.resolve("ns", "so", {"endpoints": a.url})
        await service.scrape(workload)
        state_a = workload.pods[a.url]
        same = service.resolve("ns", "so", {"endpoints": f"{a.url},{b.url}"})
        assert same is workload
        assert workload.pods[a.url] is state_a
        assert set(workload.pods) == {a.url, b.url}
    finally:
        await service.stop()


async def _loop_turns(service: ScalerService) -> None:
    for _ in range(5):
        await asyncio.sleep(0.02)
