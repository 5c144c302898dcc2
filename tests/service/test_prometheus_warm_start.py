"""Warm start from a real Prometheus (Debian package) loaded with recorded history."""

from __future__ import annotations

import asyncio
import math
import shutil
import time
from collections.abc import Iterator

import aiohttp
import pytest

from adapters.sources.prometheus import PrometheusError, query_range
from scaler.clock import SystemClock
from scaler.config.settings import PrometheusSettings
from scaler.service.service import ScalerService
from tests.conftest import make_config, wait_until
from tests.prometheus_server import backfill, free_port, running_prometheus

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("promtool") is None,
    reason="needs the Debian prometheus package (.ci/run installs it)")

STEP = 300.0
DAYS = 3


def daily_rate(t: float) -> float:
    """A recorded workload: 200 req/s at night, 800 at 15:00, a clean daily cycle."""
    return 500.0 - 300.0 * math.cos(2 * math.pi * ((t % 86400) - 3 * 3600) / 86400)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Prometheus serving three days of recorded history (backfilled with promtool)."""
    root = tmp_path_factory.mktemp("prometheus")
    now = math.floor(time.time() / STEP) * STEP
    lines = ["# TYPE recorded_requests_per_second gauge"]
    for k in range(int(DAYS * 86400 / STEP), 0, -1):
        t = now - k * STEP
        lines.append(f'recorded_requests_per_second{{namespace="llm",scaledobject="llama"}} '
                     f"{daily_rate(t):.3f} {t:.0f}")
    with running_prometheus(root, data=backfill(root, lines)) as url:
        yield url


async def test_query_range_reads_the_recorded_history(prometheus: str) -> None:
    end = time.time()
    async with aiohttp.ClientSession() as session:
        series = await query_range(session, prometheus,
                                   'recorded_requests_per_second{namespace="llm"}',
                                   start_s=end - 2 * 86400, end_s=end, step_s=STEP)
    assert len(series.times_s) >= 2 * 86400 / STEP - 2
    for t, v in zip(series.times_s[::50], series.values[::50], strict=True):
        assert v == pytest.approx(daily_rate(math.floor(t / STEP) * STEP), abs=1.0)


async def test_bad_query_and_unreachable_server_are_clear_errors(prometheus: str) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(PrometheusError, match="parse error"):
            await query_range(session, prometheus, "sum(", start_s=0, end_s=600, step_s=STEP)
        with pytest.raises(PrometheusError, match=r"is prometheus\.url right"):
            await query_range(session, f"http://127.0.0.1:{free_port()}", "up",
                              start_s=0, end_s=600, step_s=STEP, timeout_s=2)


def service_with(url: str) -> ScalerService:
    config = make_config()
    import dataclasses

    config = dataclasses.replace(config, prometheus=PrometheusSettings(
        url=url, history_query='recorded_requests_per_second{namespace="{namespace}",'
                               'scaledobject="{scaledobject}"}'))
    return ScalerService(config, clock=SystemClock(), background=False)


async def test_a_new_workload_forecasts_from_history_at_once(prometheus: str, pods) -> None:
    pod = await pods()
    service = service_with(prometheus)
    await service.start()
    try:
        workload = service.resolve("llm", "llama", {"endpoints": pod.url})
        await wait_until(lambda: service.telemetry.registry.get_sample_value(
            "scaler_forecast_warm_starts_total", {"result": "ok"}) == 1, timeout_s=20)
        assert workload.planner is not None
        forecast = workload.planner.forecaster.forecast(STEP)
        expected = daily_rate(time.time() + STEP)
        assert forecast.mean == pytest.approx(expected, rel=0.15)
    finally:
        await service.stop()


async def test_prometheus_down_means_a_cold_start_not_a_failed_rpc(pods) -> None:
    pod = await pods()
    service = service_with(f"http://127.0.0.1:{free_port()}")
    await service.start()
    try:
        workload = service.resolve("llm", "llama", {"endpoints": pod.url})
        await wait_until(lambda: service.telemetry.registry.get_sample_value(
            "scaler_forecast_warm_starts_total", {"result": "failed"}) == 1, timeout_s=20)
        await service.scrape(workload)
        assert service.answer(workload).decision.desired_replicas == 1  # holds the pod running
    finally:
        await service.stop()


async def test_no_query_no_warm_start(pods) -> None:
    pod = await pods()
    service = ScalerService(make_config(), background=False)
    await service.start()
    try:
        service.resolve("llm", "llama", {"endpoints": pod.url})
        await asyncio.sleep(0.05)
        for result in ("ok", "failed", "skipped"):
            assert not service.telemetry.registry.get_sample_value(
                "scaler_forecast_warm_starts_total", {"result": result})
    finally:
        await service.stop()
