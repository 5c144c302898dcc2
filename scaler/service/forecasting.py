"""Each predictive workload's planner: built from its spec, warm-started, refitted in turn.

A planner is rebuilt whenever its spec or ``scrape.interval_s`` changes, but what it learnt
(the forecaster, the capacity correction while the profile and SLO stay) is carried over, so
a ConfigMap reload or an edited ScaledObject costs no history. A new workload's forecaster is
taught its Prometheus history in the background: RPCs never wait for it, until it lands the
forecaster simply knows less. Warm starts and refits each hold the interpreter for tens of
milliseconds up to seconds, so they run in a thread, one at a time.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp

from adapters.formats.promql import escape
from adapters.sources.prometheus import PrometheusError, query_range
from scaler.clock import Clock
from scaler.config.profiles import load_profile, profile_path
from scaler.config.settings import ServiceConfig
from scaler.keda.metadata import WorkloadSpec
from scaler.model.capacity import CapacityModel
from scaler.model.forecast.forecaster import DemandForecaster
from scaler.model.predictive import (
    FORECAST_STEP_S,
    PlannerSettings,
    PredictivePlanner,
    history_step_starts,
)
from scaler.service.telemetry import Telemetry
from scaler.service.workloads import Workload

log = logging.getLogger("scaler.service")

REFIT_RETRY_S = 3600.0  # after a refit failed (logged), the next try


@dataclass
class RefitState:
    """One workload's refits: whether one is under way, and none before when (a failure)."""

    running: bool = False
    not_before_s: float = -math.inf


def planner_settings(spec: WorkloadSpec, decision_interval_s: float) -> PlannerSettings:
    """The planner's settings: the trigger's parts, asked once per scrape interval."""
    return PlannerSettings(spec.plan, spec.bounds, spec.nodes,
                           decision_interval_s=decision_interval_s)


class Forecasting:
    def __init__(self, *, config: Callable[[], ServiceConfig], clock: Clock,
                 telemetry: Telemetry,
                 spawn: Callable[[Coroutine[Any, Any, object], str], None]) -> None:
        """``spawn`` runs a short background task (a refit) to its end."""
        self._config = config
        self._clock = clock
        self._telemetry = telemetry
        self._spawn = spawn
        self.session: aiohttp.ClientSession | None = None  # Prometheus' pool, while started
        self._heavy_work = asyncio.Semaphore(1)  # forecaster warm starts and refits, in turn

    def sync_planner(self, workload: Workload) -> None:
        """Give a predictive workload a planner matching its spec; keep what it learnt."""
        spec = workload.spec
        if spec.plan.policy != "predictive":
            workload.planner = workload.plan = None  # an old plan must not hold nodes
            workload.asked_nodes = None
            return
        settings = planner_settings(spec, self._config().scrape.interval_s)
        old = workload.planner
        if old is not None and old.settings == settings and _capacity_matches(old, spec):
            return
        capacity = old.capacity if old is not None and _capacity_matches(old, spec) else (
            CapacityModel(load_profile(profile_path(spec.plan.profile)),
                          slo_ttft_s=spec.plan.slo_ttft_s))
        forecaster = old.forecaster if old is not None else DemandForecaster(FORECAST_STEP_S)
        workload.planner = PredictivePlanner(settings, capacity, forecaster)
        if old is not None:
            workload.planner.adopt(old)

    def history_query(self, workload: Workload) -> str | None:
        """The PromQL of the workload's demand history, None when there is none to read.

        The placeholders' values are escaped as the inside of a PromQL string: a namespace
        or name cannot close the string it is put in and add to the query.
        """
        prometheus = self._config().prometheus
        template = workload.spec.history_query or prometheus.history_query
        if workload.planner is None or not prometheus.url or not template:
            return None
        return template.replace("{namespace}", escape(workload.key.namespace)).replace(
            "{scaledobject}", escape(workload.key.name))

    async def warm_start(self, workload: Workload, query: str) -> None:
        """Teach a new workload's forecaster its Prometheus history; on failure, start cold."""
        settings = self._config().prometheus
        now_wall = self._clock.wall()
        assert self.session is not None
        try:
            series = await query_range(
                self.session, settings.url, query,
                start_s=now_wall - settings.history_s,
                end_s=now_wall, step_s=FORECAST_STEP_S, timeout_s=settings.timeout_s)
        except PrometheusError as exc:
            log.warning("workload %s: no warm start from Prometheus (%s); the forecaster "
                        "starts cold", workload.key, exc)
            self._telemetry.warm_starts.labels("failed").inc()
            return
        planner = workload.planner
        if planner is None or not series.times_s or planner.has_observed:
            self._telemetry.warm_starts.labels("skipped").inc()
            return
        offset = self._clock.monotonic() - now_wall  # history is in wall time, state monotonic
        times = history_step_starts([t + offset for t in series.times_s], FORECAST_STEP_S)
        warmed = DemandForecaster.from_dict(planner.forecaster.to_dict())
        async with self._heavy_work:  # ~50 ms of CPU for two weeks: in a thread, in turn
            await asyncio.to_thread(warmed.warm_start, times, series.values)
        if workload.planner is not planner or planner.has_observed:
            self._telemetry.warm_starts.labels("skipped").inc()
            return
        planner.forecaster = warmed
        planner.warm_started(times[-1])
        self._telemetry.warm_starts.labels("ok").inc()
        log.info("workload %s: forecaster warm-started from %d points of Prometheus history",
                 workload.key, len(times))

    def refit_when_due(self, workload: Workload, state: RefitState) -> None:
        """Start a due refit in the background; refits run one at a time.

        Workloads registered together come due together (a restart, a day later): run at
        once, their refits would hold the interpreter for minutes while scrapes wait.
        """
        planner = workload.planner
        if planner is None or state.running or not planner.forecaster.needs_refit:
            return
        if self._clock.monotonic() < state.not_before_s:
            return
        state.running = True
        self._spawn(self._refit_in_turn(workload, state), f"refit {workload.key}")

    async def _refit_in_turn(self, workload: Workload, state: RefitState) -> None:
        try:
            async with self._heavy_work:
                await self.refit_forecast(workload)
        except Exception:  # a bug in fitting must not retry every interval, nor stay silent
            log.exception("workload %s: forecaster refit failed; the old parameters stay, next "
                          "try in %.0f s", workload.key, REFIT_RETRY_S)
            state.not_before_s = self._clock.monotonic() + REFIT_RETRY_S
        finally:
            state.running = False

    @staticmethod
    async def refit_forecast(workload: Workload) -> None:
        """Refit the forecaster's parameters on a copy, in a thread, off the event loop; then
        its daily shape, on the loop (milliseconds, and it must see the live readings)."""
        planner = workload.planner
        if planner is None or not planner.forecaster.needs_refit:
            return
        copy = DemandForecaster.from_dict(planner.forecaster.to_dict())
        params = await asyncio.to_thread(copy.fit_params)
        planner.forecaster.refit(params)


def _capacity_matches(planner: PredictivePlanner, spec: WorkloadSpec) -> bool:
    capacity = planner.capacity
    return (capacity.profile.name == spec.plan.profile  # profile files are named after their name
            and capacity.slo_ttft_s == spec.plan.slo_ttft_s)
