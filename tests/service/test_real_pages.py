"""The service scraping the real captured pages in ../shared/fixtures/metrics over HTTP."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from scaler.service.service import Unavailable
from scaler.service.telemetry import fleet_signals
from tests.conftest import FIXTURES

PAGES = {
    "v0": "vllm_v0_0.6-era_aibrix-docs.txt",
    "v1": "vllm_v1_0.7-era_excerpt.txt",
    "dcgm2": "dcgm_exporter_2.x_k8s.txt",
    "dcgm4": "dcgm_exporter_4.x_readme.txt",
}


@pytest.fixture
async def fixture_server() -> AsyncIterator[str]:
    async def page(request: web.Request) -> web.Response:
        text = (FIXTURES / PAGES[request.match_info["name"]]).read_text(encoding="utf-8")
        return web.Response(text=text, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/{name}/metrics", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_real_vllm_pages_of_two_engine_generations(fixture_server, service):
    workload = service.resolve("llm", "qwen", {
        "endpoints": f"{fixture_server}/v0/metrics,{fixture_server}/v1/metrics",
        "gpuEndpoints": f"{fixture_server}/dcgm2/metrics",
        "policy": "reactive",  # what the pages say now (a fresh predictive plan holds a window)
    })
    await service.scrape(workload)
    answer = service.answer(workload)
    # Both captured pods are idle (0 waiting, 0 running, empty KV cache).
    assert answer.decision.desired_replicas == 0
    assert answer.decision.active is False
    signals = fleet_signals(workload, service.clock.monotonic(), 15)
    assert signals["waiting"] == 0 and signals["kv_cache_usage"] == 0
    # dcgm 2.x page: pod labels empty (bare metal), so the page counts whole: 44 % util.
    assert signals["gpu_util_percent"] == 44
    assert all(p.problem is None for p in workload.pods.values())


async def test_dcgm_page_without_the_needed_fields_is_reported_not_fatal(
        fixture_server, service, caplog):
    workload = service.resolve("llm", "qwen", {
        "endpoints": f"{fixture_server}/v1/metrics",
        "gpuEndpoints": f"{fixture_server}/dcgm4/metrics",
        "policy": "reactive",
    })
    with caplog.at_level(logging.WARNING, logger="scaler.service"):
        await service.scrape(workload)
    assert service.answer(workload).decision.desired_replicas == 0
    assert any("GPU metrics" in r.message for r in caplog.records)
    assert service.telemetry.registry.get_sample_value("scaler_scrape_errors_total", {
        "namespace": "llm", "scaledobject": "qwen", "source": "gpu", "kind": "bad_page"}) == 1


async def test_a_dcgm_page_is_not_a_vllm_page(fixture_server, service):
    workload = service.resolve("llm", "wrong", {"endpoints": f"{fixture_server}/dcgm2/metrics"})
    await service.scrape(workload)
    (pod,) = workload.pods.values()
    assert "is this a vLLM /metrics endpoint" in (pod.problem or "")  # logged so
    with pytest.raises(Unavailable, match="1 of 1 pod page") as info:
        service.answer(workload)
    assert "vLLM" not in str(info.value)  # the caller is not told what answered
