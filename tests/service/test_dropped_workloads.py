"""What a dropped workload leaves behind: no series on /metrics; and a Prometheus answer that
cannot be used costs a workload its warm start, never a task."""

from __future__ import annotations

import asyncio
import dataclasses

from aiohttp import web
from prometheus_client import generate_latest

from scaler.config.settings import PrometheusSettings
from scaler.service.service import ScalerService
from scaler.sim.emulation.engine_state import EngineState
from scaler.sim.emulation.pod_server import EmulatedVllmPod
from tests.clock import ManualClock
from tests.conftest import make_config, wait_until
from tests.listener import Listener, serve


def series_of(service: ScalerService, name: str) -> list[str]:
    text = generate_latest(service.telemetry.registry).decode()
    return [line for line in text.splitlines()
            if not line.startswith("#") and f'scaledobject="{name}"' in line]


async def test_a_dropped_workload_leaves_no_series(service):
    page = EmulatedVllmPod([EngineState(waiting=3)]).page()
    runner, base = await serve({"/metrics": lambda: web.Response(
        text=page + 'vllm:num_requests_waiting{x="1"} not-a-number\n')})
    url = f"{base}/metrics"
    async with Listener("127.0.0.1") as closed:
        pass  # connection refused from now on
    try:
        kept = {"endpoints": closed.url}
        second_trigger = {"endpoints": closed.url, "metricName": "second"}
        gone = service.resolve("ns", "gone", {"endpoints": f"{url},{closed.url}",
                                              "gpuEndpoints": closed.url})
        for workload in (service.resolve("ns", "kept", kept),
                         service.resolve("ns", "kept", second_trigger), gone):
            await service.scrape(workload)
        assert any("scaler_scrape_errors_total" in s for s in series_of(service, "gone"))
        assert any("scaler_page_bad_lines_total" in s for s in series_of(service, "gone"))
        service.clock.advance(service.config.workloads.idle_timeout_s + 1)
        service.resolve("ns", "kept", kept)  # asked for: kept
        dropped = service.resolve("ns", "kept", second_trigger).key
        await asyncio.wait_for(service.runners[gone.key].run(), 5)  # its round: idle
        assert service.registry.get(gone.key) is None
        assert series_of(service, "gone") == []
        service.drop(service.registry.get(dropped))  # one trigger of two: the counters stay
        assert any("scaler_scrape_errors_total" in s for s in series_of(service, "kept"))
    finally:
        await runner.cleanup()


async def test_an_unusable_history_answer_fails_the_warm_start_not_the_task():
    runner, url = await serve({"/api/v1/query_range": lambda: web.json_response(
        {"status": "success", "data": {"resultType": "matrix",
                                       "result": [{"values": [["noon", "1"]]}]}})})
    config = dataclasses.replace(make_config(), prometheus=PrometheusSettings(
        url=url, history_query="rate(x[5m])"))
    service = ScalerService(config, clock=ManualClock(), background=False)
    await service.start()
    try:
        service.resolve("ns", "so", {"endpoints": "http://127.0.0.1:1/metrics"})
        registry = service.telemetry.registry

        def failed() -> float | None:
            return registry.get_sample_value("scaler_forecast_warm_starts_total",
                                             {"result": "failed"})

        await wait_until(lambda: failed() == 1)
    finally:
        await service.stop()
        await runner.cleanup()
