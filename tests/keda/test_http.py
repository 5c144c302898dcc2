"""HTTP side: probes, /metrics, and the metrics-api JSON decision (called with its token;
callers without it: test_http_auth.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scaler.commands.serve import RunningApp, start_app
from scaler.service.service import ScalerService
from scaler.sim.emulation.engine_state import EngineState
from tests.clock import ManualClock
from tests.conftest import make_config

NS, NAME = "llm", "llama-8b"
TOKEN = "test-token-5e1f"


@pytest.fixture
async def app(clock: ManualClock, tmp_path: Path) -> AsyncIterator[RunningApp]:
    """The real servers, the metrics-api route on with ``TOKEN``."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    config = make_config({"http_api_token_file": str(token_file)}, timeout_s=1.0)
    running = await start_app(config, ScalerService(config, clock=clock, background=False))
    yield running
    await running.stop()


def session() -> aiohttp.ClientSession:
    """KEDA's metrics-api trigger with authMode: bearer."""
    return aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"})


def url(app, path: str) -> str:
    return f"http://127.0.0.1:{app.http_port}{path}"


def decision_url(app, **query: str) -> str:
    from urllib.parse import urlencode

    return url(app, f"/api/v1/namespaces/{NS}/scaledobjects/{NAME}?{urlencode(query)}")


async def test_probes(app):
    async with session() as http:
        async with http.get(url(app, "/healthz")) as resp:
            assert resp.status == 200
        async with http.get(url(app, "/readyz")) as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] == "ready"


async def test_decision_json_matches_grpc_path(app, pods):
    pod = await pods()
    pod.engines = [EngineState(waiting=15, running=30, kv_cache_usage=0.5)]
    async with session() as http:
        async with http.get(decision_url(app, endpoints=pod.url, policy="reactive")) as resp:
            assert resp.status == 503
            body = await resp.json()
            assert body["error"] == "unavailable"
            assert "no scrape has completed yet" in body["message"]
        for workload in app.service.registry:
            await app.service.scrape(workload)
        async with http.get(decision_url(app, endpoints=pod.url, policy="reactive")) as resp:
            assert resp.status == 200
            body = await resp.json()
    assert body["desiredReplicas"] == 3  # 15 waiting / 5 per replica
    assert body["active"] is True
    assert body["metricName"] == "desired-replicas"
    assert body["signals"]["waiting"] == 15
    assert body["signals"]["running"] == 30
    assert body["proposals"]["queue"] == 3
    assert "desiredNodes" not in body  # no node plan without the predictive policy


async def test_decision_json_shows_the_predictive_node_plan(app, pods):
    pod = await pods()
    pod.engines = [EngineState(running=3)]
    async with session() as http:
        async with http.get(decision_url(app, endpoints=pod.url, gpusPerNode="1")) as resp:
            assert resp.status == 503  # registered; nothing scraped yet
        for workload in app.service.registry:
            await app.service.scrape(workload)
        async with http.get(decision_url(app, endpoints=pod.url, gpusPerNode="1")) as resp:
            body = await resp.json()
    assert body["desiredNodes"] == body["desiredReplicas"] == 1  # one replica per 1-GPU node
    assert set(body["proposals"]) >= {"queue", "kv_cache", "capacity_now", "forecast"}


async def test_decision_json_bad_metadata_is_400_naming_keys(app):
    async with session() as http, http.get(
            decision_url(app, endpoints="nope", maxReplicas="x")) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["error"] == "invalid_metadata"
    assert any("'maxReplicas'" in p for p in body["problems"])
    assert any("'endpoints'" in p for p in body["problems"])


async def test_metrics_page_exposes_signals_and_decisions(app, pods):
    pod = await pods()
    pod.engines = [EngineState(waiting=4, running=7, kv_cache_usage=0.25)]
    async with session() as http:
        await http.get(decision_url(app, endpoints=pod.url))
        for workload in app.service.registry:
            await app.service.scrape(workload)
        async with http.get(url(app, "/metrics")) as resp:
            assert resp.status == 200
            page = await resp.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(page) for s in family.samples
    }
    key = (("metric", "desired-replicas"), ("namespace", NS), ("scaledobject", NAME))
    assert samples[("scaler_workload_signal", (*key[:2], key[2], ("signal", "waiting")))] == 4
    assert samples[("scaler_workload_desired_replicas", key)] == 1
    assert samples[("scaler_workload_active", key)] == 1
    assert samples[("scaler_workloads", ())] == 1
    assert ("scaler_scrape_duration_seconds_count", (("source", "inference"),)) in samples
