"""A pod that is down, slow or broken: counted, logged once per change, never fatal."""

from __future__ import annotations

import logging

import pytest

from scaler.service.service import ScalerService, Unavailable
from scaler.sim.emulation.engine_state import EngineState
from tests.clock import ManualClock
from tests.conftest import make_config


@pytest.fixture
async def service():
    svc = ScalerService(make_config(timeout_s=0.2), clock=ManualClock(), background=False)
    await svc.start()
    yield svc
    await svc.stop()


def warnings_and_recoveries(caplog) -> tuple[list[str], list[str]]:
    records = [r for r in caplog.records if r.name == "scaler.service"]
    return ([r.getMessage() for r in records if r.levelno == logging.WARNING],
            [r.getMessage() for r in records if "recovered" in r.getMessage()])


async def test_problems_are_logged_once_per_change_and_counted_every_time(
        service, pods, caplog):
    pod = await pods()
    workload = service.resolve("ns", "so", {"endpoints": pod.url})
    caplog.set_level(logging.INFO, logger="scaler.service")
    await service.scrape(workload)
    pod.fault = "http_500"
    for _ in range(3):
        await service.scrape(workload)
    pod.fault = "garbage"
    for _ in range(2):
        await service.scrape(workload)
    pod.fault = None
    await service.scrape(workload)
    await service.scrape(workload)

    warnings, recoveries = warnings_and_recoveries(caplog)
    assert len(warnings) == 2, warnings  # one for the 500s, one for the garbage
    assert "500" in warnings[0] and "not a number" not in warnings[0]
    assert len(recoveries) == 1
    sample = service.telemetry.registry.get_sample_value
    labels = {"namespace": "ns", "scaledobject": "so", "source": "inference"}
    assert sample("scaler_scrape_errors_total", {**labels, "kind": "http_status"}) == 3
    assert sample("scaler_scrape_errors_total", {**labels, "kind": "bad_page"}) == 2


async def test_a_hanging_pod_times_out_and_the_others_are_still_read(service, pods):
    hung, fine = await pods(), await pods()
    fine.engines = [EngineState(waiting=30)]
    hung.fault = "hang"
    workload = service.resolve("ns", "so", {"endpoints": f"{hung.url},{fine.url}",
                                            "policy": "reactive"})
    await service.scrape(workload)
    assert "timed out after 0.2 s" in (workload.pods[hung.url].problem or "")
    # 30 waiting on the one pod with data; the hung pod counts as 0 while scaling up:
    # 30 / 2 pods / 5 -> ceil(3 * 2) = 6.
    assert service.answer(workload).decision.desired_replicas == 6


async def test_stale_data_is_unavailable_and_recovers_by_itself(service, pods):
    pod = await pods()
    pod.engines = [EngineState(waiting=10)]
    workload = service.resolve("ns", "so", {"endpoints": pod.url, "policy": "reactive"})
    await service.scrape(workload)
    pod.fault = "truncated"
    clock = service.clock
    assert isinstance(clock, ManualClock)
    clock.advance(16)
    await service.scrape(workload)
    with pytest.raises(Unavailable, match="metrics are stale"):
        service.answer(workload)
    pod.fault = None
    await service.scrape(workload)
    assert service.answer(workload).decision.desired_replicas == 2
