"""Each predictive workload's planner: built from its spec, kept across changes, refitted
in turn. (Warm starts from a real Prometheus: test_prometheus_warm_start.py.)"""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from scaler.keda.metadata import parse_metadata
from scaler.model.forecast.forecaster import DemandForecaster
from scaler.model.predictive import PlannerSettings
from scaler.service.forecasting import REFIT_RETRY_S, planner_settings
from scaler.service.service import ScalerService
from scaler.sim.emulation.engine_state import EngineState
from tests.conftest import make_config, wait_until


def test_the_planner_takes_every_setting_from_the_spec_but_the_interval() -> None:
    spec = parse_metadata({
        "endpoints": "http://pod:8000/metrics", "podStartupSeconds": "91",
        "nodeStartupSeconds": "601", "scaleDownWindowSeconds": "301", "headroom": "1.3",
        "minReplicas": "2", "maxReplicas": "40", "gpusPerReplica": "2", "gpusPerNode": "4",
        "spareNodes": "1", "minNodes": "1", "maxNodes": "9"})
    settings, defaults = planner_settings(spec, 7.5), PlannerSettings()
    assert settings.decision_interval_s == 7.5  # scrape.interval_s: a decision per scrape
    assert (settings.plan, settings.bounds, settings.nodes) == (spec.plan, spec.bounds,
                                                                spec.nodes)
    assert settings.plan != defaults.plan and settings.bounds != defaults.bounds
    assert settings.nodes != defaults.nodes
    assert (settings.drain_s, settings.node_scale_down_window_s) == (
        defaults.drain_s, defaults.node_scale_down_window_s)  # not set per trigger


async def test_metadata_changes_keep_what_the_forecaster_learnt(service, pods):
    pod = await pods()
    pod.engines = [EngineState()]
    workload = service.resolve("ns", "so", {"endpoints": pod.url})
    await service.scrape(workload)
    planner = workload.planner
    assert planner is not None
    service.resolve("ns", "so", {"endpoints": pod.url, "headroom": "1.3"})
    assert workload.planner is not None and workload.planner is not planner
    assert workload.planner.forecaster is planner.forecaster
    assert workload.planner.settings.plan.headroom == 1.3
    service.resolve("ns", "so", {"endpoints": pod.url, "policy": "reactive"})
    assert workload.planner is None
    assert workload.plan is None  # an old plan must neither hold nodes nor seed a new planner


async def test_a_refit_runs_off_the_event_loop_and_only_swaps_parameters(service, pods):
    pod = await pods()
    pod.engines = [EngineState(running=10)]
    workload = service.resolve("ns", "so", {"endpoints": pod.url})
    await service.scrape(workload)
    assert workload.planner is not None
    forecaster = workload.planner.forecaster
    for i in range(3 * 288):  # three days of 5-minute steps
        forecaster.observe(i * forecaster.step_s, 40.0 + 10 * (i % 288 > 144))
    assert forecaster.needs_refit
    before = forecaster.forecast(300).mean
    await service.forecasting.refit_forecast(workload)
    assert not forecaster.needs_refit
    assert forecaster.forecast(300).mean == pytest.approx(before, rel=0.2)



async def test_due_refits_run_in_the_background_one_at_a_time(service, pods, monkeypatch):
    fits: list[int] = []
    release = threading.Event()

    def blocking_fit(self: DemandForecaster):  # type: ignore[no-untyped-def]
        fits.append(1)
        release.wait(10)  # the first refit holds its thread until the test lets it go
        return self.params

    monkeypatch.setattr(DemandForecaster, "fit_params", blocking_fit)
    pod = await pods()
    workloads = [service.resolve("ns", f"so-{i}", {"endpoints": f"{pod.url}?{i}"})
                 for i in range(2)]
    for workload in workloads:
        forecaster = workload.planner.forecaster
        for i in range(3 * 288):
            forecaster.observe(i * forecaster.step_s, 40.0)
        assert forecaster.needs_refit
    for workload in (*workloads, workloads[0]):  # the repeat is already scheduled
        service.forecasting.refit_when_due(workload, service.runners[workload.key].refit)
    await wait_until(lambda: len(fits) == 1)
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(fits) == 1  # the second waits for the first
    release.set()
    await wait_until(lambda: not any(r.refit.running for r in service.runners.values()))
    assert len(fits) == 2
    assert not any(w.planner.forecaster.needs_refit for w in workloads)


async def test_the_scrape_loop_starts_a_due_refit_by_itself(pods):
    """With background loops on (as in production), a refit comes due and happens."""
    service = ScalerService(make_config(interval_s=0.05), background=True)
    await service.start()
    try:
        pod = await pods()
        workload = service.resolve("ns", "so", {"endpoints": pod.url})
        assert workload.planner is not None
        forecaster = workload.planner.forecaster
        for i in range(3 * 288):
            forecaster.observe(i * forecaster.step_s, 40.0 + 10 * (i % 288 > 144))
        assert forecaster.needs_refit
        await wait_until(lambda: not forecaster.needs_refit)
    finally:
        await service.stop()


async def test_a_failed_refit_keeps_the_old_parameters_and_waits_before_the_next_try(
        service, monkeypatch, caplog):
    def broken_fit(self: DemandForecaster):  # type: ignore[no-untyped-def]
        raise ValueError("singular matrix")

    monkeypatch.setattr(DemandForecaster, "fit_params", broken_fit)
    workload = service.resolve("ns", "so", {"endpoints": "http://127.0.0.1:9/metrics"})
    forecaster = workload.planner.forecaster
    for i in range(3 * 288):
        forecaster.observe(i * forecaster.step_s, 40.0)
    params = forecaster.params
    refit = service.runners[workload.key].refit
    with caplog.at_level(logging.ERROR, logger="scaler.service"):
        service.forecasting.refit_when_due(workload, refit)
        await wait_until(lambda: not refit.running)
    assert "forecaster refit failed; the old parameters stay" in caplog.text
    assert forecaster.params == params and forecaster.needs_refit
    service.clock.advance(REFIT_RETRY_S - 1)
    service.forecasting.refit_when_due(workload, refit)
    assert not refit.running  # not yet
    service.clock.advance(1)
    service.forecasting.refit_when_due(workload, refit)
    assert refit.running
    await wait_until(lambda: not refit.running)
