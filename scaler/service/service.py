"""The scaler service: background scraping into memory, decisions out of memory.

One asyncio task per workload scrapes its pods every ``scrape.interval_s``
(through one shared, concurrency-bounded fetcher), updates the workload's
state and re-runs the policy. RPCs and HTTP requests only read that state, so
an answer costs microseconds and never waits on a slow pod.

Errors are answered, not invented: bad metadata raises ``MetadataError``
(INVALID_ARGUMENT), a workload with no data yet or only stale data raises
``Unavailable`` (UNAVAILABLE), so KEDA applies the ScaledObject's fallback.
Scrape problems are logged once when they start and once when they end.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient

from adapters.formats.dcgm import GpuLoad, gpu_load_all, gpu_load_by_pod, read_dcgm
from adapters.formats.promtext import PageError
from adapters.formats.vllm import read_page
from adapters.kubernetes.client import KubeConfigError, kube_client
from adapters.kubernetes.discovery import DiscoveryError, PodDiscovery, WorkloadTarget
from adapters.sources.gpu_index import GpuIndex
from adapters.sources.prometheus import PrometheusError, query_range
from adapters.sources.scrape import PageFetcher, ScrapeError
from scaler.clock import Clock, SystemClock
from scaler.config.settings import ServiceConfig, needs_restart
from scaler.keda.metadata import Endpoint, MetadataError, WorkloadSpec, parse_metadata
from scaler.model import observe
from scaler.model.capacity import CapacityModel
from scaler.model.decision import decide_workload
from scaler.model.forecast import DemandForecaster
from scaler.model.predictive import FORECAST_STEP_S, Plan, PlannerSettings, PredictivePlanner
from scaler.model.profile import PROFILES_DIR, load_profile
from scaler.model.reactive import Decision, NoData
from scaler.service.prometheus_scrape import PrometheusSource
from scaler.service.supervise import DONE, supervise
from scaler.service.telemetry import Telemetry
from scaler.service.workloads import (
    READ_HISTOGRAMS,
    PodState,
    Workload,
    WorkloadKey,
    WorkloadRegistry,
)

log = logging.getLogger("scaler.service")

_METADATA_CACHE_SIZE = 4096
TARGET_REPLICAS_EVERY_S = 30.0
PROMETHEUS_CONNECTIONS = 8  # warm starts and metrics-source queries, all workloads
REFIT_RETRY_S = 3600.0  # after a refit failed (logged), the next try


class Unavailable(Exception):
    """No trustworthy decision right now; the message says why and what to check."""


@dataclass(frozen=True)
class Answer:
    workload: Workload
    decision: Decision
    data_age_s: float


class ScalerService:
    def __init__(self, config: ServiceConfig | None = None, *, clock: Clock | None = None,
                 background: bool = True, kube_api: ApiClient | None = None) -> None:
        self.config = config or ServiceConfig()
        self.clock = clock or SystemClock()
        self.background = background
        self.telemetry = Telemetry()
        self.registry = WorkloadRegistry(
            idle_timeout_s=self.config.workloads.idle_timeout_s,
            rate_window_s=self.config.scrape.rate_window_s,
        )
        self.telemetry.watch(lambda: self.registry, self.clock.monotonic,
                             lambda: self.config.scrape.stale_after_s)
        self._specs: dict[frozenset[tuple[str, str]], WorkloadSpec | MetadataError] = {}
        self._tasks: dict[WorkloadKey, asyncio.Task[None]] = {}
        self._tasks_warm: dict[WorkloadKey, asyncio.Task[None]] = {}
        self._kube_api = kube_api
        self._kube_problem: str | None = None
        self._background: set[asyncio.Task[object]] = set()
        self.gpu_index: GpuIndex | None = None
        self._gpu_task: asyncio.Task[int] | None = None
        self._changed: dict[WorkloadKey, asyncio.Event] = {}
        self._session: aiohttp.ClientSession | None = None
        self._prometheus_session: aiohttp.ClientSession | None = None
        self._fetcher: PageFetcher | None = None
        self._prometheus_source: PrometheusSource | None = None
        self._owns_kube_api = False  # created in start() (closed in stop()), not given
        self._heavy_work = asyncio.Semaphore(1)  # forecaster warm starts and refits, in turn
        self._refitting: set[WorkloadKey] = set()
        self._refit_after: dict[WorkloadKey, float] = {}  # no refit before (after a failure)
        self.decision_listeners: list[Callable[[Workload], None]] = []  # after each decision
        self.readiness_checks: list[Callable[[], str | None]] = []  # why not ready, or None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._kube_api is None:
            try:
                self._kube_api = await kube_client()
                self._owns_kube_api = True
            except KubeConfigError as exc:  # fine without a cluster: static endpoints work
                self._kube_problem = str(exc)
        scrape = self.config.scrape
        connector = aiohttp.TCPConnector(limit=scrape.max_concurrency, ttl_dns_cache=60)
        self._session = aiohttp.ClientSession(connector=connector)
        self._fetcher = PageFetcher(session=self._session, timeout_s=scrape.timeout_s,
                                    max_concurrency=scrape.max_concurrency)
        # Prometheus gets its own small pool: a stalled Prometheus must never hold the
        # connections the pod scrapes (and their direct fallback) need.
        self._prometheus_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=PROMETHEUS_CONNECTIONS))
        self._prometheus_source = PrometheusSource(
            self._prometheus_session, lambda: self.config.prometheus, self.clock, self.telemetry)
        await self._start_gpu_index()

    async def _start_gpu_index(self) -> None:
        """One shared index of dcgm-exporter pages, when a selector is configured."""
        gpu = self.config.gpu
        if not gpu.selector or self._kube_api is None:
            if gpu.selector:
                log.error("gpu.selector is set but there is no Kubernetes API access (%s): "
                          "GPU metrics only from static gpuEndpoints", self._kube_problem)
            return
        discovery = PodDiscovery(self._kube_api, WorkloadTarget(
            gpu.namespace, "selector", "", gpu.selector, gpu.port, gpu.path))
        await discovery.start()
        self.gpu_index = GpuIndex(discovery, lambda: self._fetcher, now_s=self.clock.monotonic,
                                  stale_after_s=lambda: self.config.scrape.stale_after_s)
        if self.background:
            self._gpu_task = asyncio.create_task(supervise(
                "dcgm-exporter round", self.gpu_index.refresh,
                lambda: self.config.scrape.interval_s, log=logging.getLogger("scaler.gpu")),
                name="dcgm pages")

    async def stop(self) -> None:
        if self._gpu_task is not None:
            self._gpu_task.cancel()
            await asyncio.gather(self._gpu_task, return_exceptions=True)
        if self.gpu_index is not None:
            await self.gpu_index.discovery.stop()
        for workload in self.registry:
            if workload.discovery is not None:
                await workload.discovery.stop()
        tasks = [*self._tasks.values(), *self._tasks_warm.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._tasks_warm.clear()
        for session in (self._session, self._prometheus_session):
            if session is not None:
                await asyncio.shield(session.close())
        self._session = self._prometheus_session = None
        if self._owns_kube_api and self._kube_api is not None:  # a given client is the giver's
            await self._kube_api.close()
            self._kube_api, self._owns_kube_api = None, False

    @property
    def ready(self) -> bool:
        return self._fetcher is not None

    # -- what RPCs call ----------------------------------------------------------------------

    def resolve(self, namespace: str, name: str, metadata: Mapping[str, str]) -> Workload:
        """The workload an RPC is about, registered (and its scraping started) if new."""
        spec = self.spec_for(self.config.tuning.metadata_for(namespace, name, metadata))
        key = WorkloadKey(namespace, name, spec.metric_name)
        workload, is_new, changed = self.registry.touch(key, spec, self.clock.monotonic())
        if changed:  # the hot path (every RPC) skips this when nothing changed
            self._sync_planner(workload)
            self._sync_discovery(workload)
        if is_new:
            log.info("workload %s registered: %d endpoint(s)", key, len(spec.endpoints))
            self._changed[key] = asyncio.Event()
            query = self._history_query(workload)
            if query is not None:
                self._tasks_warm[key] = asyncio.create_task(
                    self.warm_start(workload, query), name=f"warm start {key}")
            if self.background:
                self._tasks[key] = asyncio.create_task(self._scrape_loop(workload),
                                                       name=f"scrape {key}")
        return workload

    def lookup(self, namespace: str, name: str, metadata: Mapping[str, str]) -> Workload | None:
        """The registered workload an RPC would be about, without counting it as asked."""
        spec = self.spec_for(self.config.tuning.metadata_for(namespace, name, metadata))
        return self.registry.get(WorkloadKey(namespace, name, spec.metric_name))

    def apply_config(self, config: ServiceConfig) -> list[str]:
        """Take a new, validated config without a restart; what it learnt is kept.

        Returns the settings that changed but need a restart to apply. Workloads pick up
        new tuning at their next RPC (their spec is re-derived; forecasters are kept).
        """
        restart = needs_restart(self.config, config)
        self.config = config
        self.registry.idle_timeout_s = config.workloads.idle_timeout_s
        self.registry.rate_window_s = config.scrape.rate_window_s
        for workload in self.registry:
            workload.rate_window_s = config.scrape.rate_window_s
            for pod in workload.pods.values():
                pod.window.window_s = config.scrape.rate_window_s
        if self._fetcher is not None:
            self._fetcher.timeout_s = config.scrape.timeout_s
        self._specs.clear()
        for workload in self.registry:  # the planner's interval follows scrape.interval_s
            self._sync_planner(workload)
        return restart

    def keep_alive(self, workload: Workload, metadata: Mapping[str, str]) -> Workload:
        """A held stream counts as KEDA asking, but never rolls the spec back.

        A stream keeps the metadata it was opened with; RPCs made since may carry newer
        metadata (the ScaledObject changed), which must win. Only a workload dropped in
        the meantime is registered again, from the stream's metadata.
        """
        current = self.registry.get(workload.key)
        if current is None:
            return self.resolve(workload.key.namespace, workload.key.name, metadata)
        current.last_asked_s = self.clock.monotonic()
        return current

    def spec_for(self, metadata: Mapping[str, str]) -> WorkloadSpec:
        cache_key = frozenset(metadata.items())
        cached = self._specs.get(cache_key)
        if cached is None:
            try:
                cached = parse_metadata(metadata)
            except MetadataError as exc:
                cached = exc
            if len(self._specs) >= _METADATA_CACHE_SIZE:
                self._specs.clear()
            self._specs[cache_key] = cached
        if isinstance(cached, MetadataError):
            raise cached
        if cached.metrics_source == "prometheus" and not self.config.prometheus.url:
            raise MetadataError(["scalerMetadata key 'metricsSource' is 'prometheus' but the "
                                 "config sets no prometheus.url: set it, or use 'pods'"])
        pools = [pool.name for pool in self.config.node_pools.pools]
        if cached.node_pool and pools and cached.node_pool not in pools:
            raise MetadataError([f"scalerMetadata key 'nodePool' has value {cached.node_pool!r}:"
                                 " expected one of the configured node_pools.pools: "
                                 + ", ".join(pools)])
        return cached

    def answer(self, workload: Workload) -> Answer:
        """The latest decision, or Unavailable when there is none worth acting on."""
        now = self.clock.monotonic()
        stale_after = self.config.scrape.stale_after_s
        if workload.discovery is None and _target(workload) is not None:
            raise Unavailable(
                f"workload {workload.key}: pod discovery needs the Kubernetes API: "
                f"{self._kube_problem or 'no client'}; run in-cluster or set KUBECONFIG")
        if workload.discovery is not None and not workload.discovery.synced.is_set():
            raise Unavailable(f"workload {workload.key}: waiting for the first pod list of "
                              f"{workload.discovery.target.describe}")
        if workload.scrapes_completed == 0:
            raise Unavailable(
                f"workload {workload.key}: no scrape has completed yet (registered "
                f"{now - workload.registered_s:.1f} s ago); KEDA will retry"
            )
        if not workload.pods and workload.decision is not None:  # no ready pod: nothing missing
            assert workload.decided_s is not None
            decision_age = now - workload.decided_s
            if decision_age > stale_after:
                raise Unavailable(
                    f"workload {workload.key}: no ready pod, and the last decision is "
                    f"{decision_age:.0f} s old (limit scrape.stale_after_s={stale_after:g}): "
                    "scrape rounds are failing; see the scaler's log")
            return Answer(workload, workload.decision, decision_age)
        if not workload.pods and workload.decision is None:
            raise Unavailable(f"workload {workload.key}: {workload.no_decision_reason}")
        freshest = workload.freshest_s()
        if freshest is None or now - freshest > stale_after:
            age = "no good page yet" if freshest is None else f"newest {now - freshest:.0f} s old"
            outage = self._prometheus_outage(workload)
            problems = [f"cannot read Prometheus ({outage})"] if outage else []
            raise Unavailable(
                f"workload {workload.key}: metrics are stale ({age}, limit "
                f"scrape.stale_after_s={stale_after:g}): "
                + _joined(problems + workload.problems())
            )
        if workload.decision is None:
            raise Unavailable(f"workload {workload.key}: {workload.no_decision_reason}")
        return Answer(workload, workload.decision, now - freshest)

    def change_event(self, workload: Workload) -> asyncio.Event:
        """An event set at the next decision of this workload (for StreamIsActive)."""
        return self._changed.setdefault(workload.key, asyncio.Event())

    # -- scraping ----------------------------------------------------------------------------

    async def _scrape_loop(self, workload: Workload) -> None:
        """Scrape at once (a new workload needs data), then every interval at a random phase.

        The phase spreads workloads registered together (a KEDA restart registers all of
        them within one poll) so their scrapes do not all land in the same instant.
        """
        interval = self.config.scrape.interval_s

        async def round_() -> object:
            if self.registry.get(workload.key) is not workload:
                return DONE
            if self.registry.is_idle(workload, self.clock.monotonic()):
                self._drop(workload)
                return DONE
            await self.scrape(workload)
            self._refit_when_due(workload)
            return None

        await supervise(f"workload {workload.key}: scrape round", round_, interval, log=log,
                        clock=self.clock, sharp=True, phase_s=random.uniform(0.0, interval))

    def _drop(self, workload: Workload) -> None:
        if workload.discovery is not None:
            self.spawn(workload.discovery.stop(), f"stop discovery {workload.key}")
        log.info("workload %s dropped: KEDA has not asked about it for %.0f s",
                 workload.key, self.registry.idle_timeout_s)
        if self._prometheus_source is not None:
            self._prometheus_source.forget(workload)
        self.registry.remove(workload.key)
        self._tasks.pop(workload.key, None)
        self._changed.pop(workload.key, None)
        self.telemetry.workloads_dropped.inc()

    async def scrape(self, workload: Workload) -> None:
        """One round: every pod page and GPU page, then a new decision."""
        if self._fetcher is None:
            raise RuntimeError("ScalerService.start() must be awaited before scraping")
        spec = workload.spec
        if workload.discovery is not None:
            if not workload.discovery.synced.is_set():
                return
            workload.set_endpoints(Endpoint(pod, url)
                                  for pod, url in workload.discovery.ready_endpoints())
            await self._read_target_replicas(workload)
        urls = list(workload.pods)
        if spec.metrics_source == "prometheus" and self._prometheus_source is not None:
            urls = await self._prometheus_source.read(workload)
        await asyncio.gather(
            *(self._scrape_pod(workload, spec, url) for url in urls),
            self._scrape_gpus(workload, spec),
        )
        self._decide(workload)

    async def _scrape_pod(self, workload: Workload, spec: WorkloadSpec, url: str) -> None:
        assert self._fetcher is not None
        labels = (workload.key.namespace, workload.key.name, "inference")
        timer = self.telemetry.scrape_duration.labels("inference").time()
        try:
            with timer:
                text = await self._fetcher.fetch(url)
                snapshot = read_page(text, server=spec.server, model_name=spec.model_name,
                                     histograms=READ_HISTOGRAMS)
        except (ScrapeError, PageError) as exc:
            kind = exc.kind if isinstance(exc, ScrapeError) else "bad_page"
            self.telemetry.scrape_errors.labels(*labels, kind).inc()
            if url in workload.pods and workload.record_failure(url, f"{url}: {exc}"):
                log.warning("workload %s: pod %s: %s", workload.key,
                            workload.pods[url].endpoint.pod, exc)
            return
        if url not in workload.pods:  # endpoints changed while the page was in flight
            return
        if snapshot.bad_lines:
            self.telemetry.bad_lines.labels(*labels).inc(snapshot.bad_lines)
        cleared = workload.record_page(url, self.clock.monotonic(), snapshot)
        if cleared:
            log.info("workload %s: pod %s recovered (was: %s)", workload.key,
                     workload.pods[url].endpoint.pod, cleared)

    async def _scrape_gpus(self, workload: Workload, spec: WorkloadSpec) -> None:
        if not spec.gpu_endpoints:
            if self.gpu_index is not None:
                workload.gpu_by_pod = self._indexed_gpus(workload)
            return
        assert self._fetcher is not None
        pods = {e.pod for e in spec.endpoints}
        loads = {}
        for url in spec.gpu_endpoints:
            try:
                with self.telemetry.scrape_duration.labels("gpu").time():
                    readings = read_dcgm(await self._fetcher.fetch(url))
            except (ScrapeError, PageError) as exc:
                kind = exc.kind if isinstance(exc, ScrapeError) else "bad_page"
                self.telemetry.scrape_errors.labels(
                    workload.key.namespace, workload.key.name, "gpu", kind).inc()
                self._note_gpu_problem(workload, url, str(exc))
                continue
            self._note_gpu_problem(workload, url, None)
            by_pod = gpu_load_by_pod(readings, workload.key.namespace)
            matched = {pod: load for pod, load in by_pod.items() if pod in pods}
            loads.update(matched or {url: gpu_load_all(readings)})
        workload.gpu_by_pod = loads

    def _indexed_gpus(self, workload: Workload) -> dict[str, GpuLoad]:
        assert self.gpu_index is not None
        namespace = workload.spec.pod_namespace or workload.key.namespace
        found = {}
        for pod in workload.pods.values():
            load = self.gpu_index.load(namespace, pod.endpoint.pod)
            if load is not None:
                found[pod.endpoint.pod] = load
        return found

    def _note_gpu_problem(self, workload: Workload, url: str, problem: str | None) -> None:
        previous = workload.gpu_problems.pop(url, None)
        if problem is not None:
            workload.gpu_problems[url] = problem
            if problem != previous:
                log.warning("workload %s: GPU metrics %s: %s", workload.key, url, problem)
        elif previous is not None:
            log.info("workload %s: GPU metrics %s recovered", workload.key, url)

    def _sync_planner(self, workload: Workload) -> None:
        """Give a predictive workload a planner matching its spec; keep what it learnt."""
        spec = workload.spec
        if spec.policy != "predictive":
            workload.planner = workload.plan = None  # an old plan must not hold nodes
            workload.asked_nodes = None
            return
        settings = PlannerSettings(
            pod_startup_s=spec.pod_startup_s, node_startup_s=spec.node_startup_s,
            scale_down_window_s=spec.scale_down_window_s,
            decision_interval_s=self.config.scrape.interval_s, headroom=spec.headroom,
            min_replicas=spec.min_replicas, max_replicas=spec.max_replicas,
            gpus_per_replica=spec.gpus_per_replica, gpus_per_node=spec.gpus_per_node,
            spare_nodes=spec.spare_nodes, min_nodes=spec.min_nodes, max_nodes=spec.max_nodes)
        old = workload.planner
        if old is not None and old.settings == settings and _capacity_matches(old, spec):
            return
        capacity = old.capacity if old is not None and _capacity_matches(old, spec) else (
            CapacityModel(load_profile(PROFILES_DIR / f"{spec.profile}.yaml"),
                          slo_ttft_s=spec.slo_ttft_s))
        forecaster = old.forecaster if old is not None else DemandForecaster(FORECAST_STEP_S)
        workload.planner = PredictivePlanner(settings, capacity, forecaster)
        if old is not None:
            workload.planner.adopt(old)

    def _prometheus_outage(self, workload: Workload) -> str | None:
        """Why the workload's pods cannot be read from Prometheus now (metricsSource
        prometheus), None if they can."""
        source = self._prometheus_source
        if source is None or workload.spec.metrics_source != "prometheus":
            return None
        return source.problem(workload.key)

    def _plan(self, workload: Workload, now_s: float, saturated: list[PodState]) -> Plan:
        assert workload.planner is not None
        observe.learn_capacity(workload.planner.capacity, saturated)
        workload.plan = workload.planner.plan(
            observe.fleet_state(workload, now_s, self.config.scrape.stale_after_s))
        return workload.plan

    def _check_health(self, workload: Workload, now_s: float) -> list[PodState]:
        """Mark pods whose queue grows while their GPU idles unhealthy (logged once per
        change); return the saturated ones (queue and busy GPU: their throughput is capacity)."""
        saturated = []
        health_of = observe.check_health(workload, now_s, self.config.scrape.stale_after_s)
        for url, health in health_of.items():
            pod = workload.pods[url]
            if (health == "unhealthy") != pod.unhealthy:
                pod.unhealthy = health == "unhealthy"
                if pod.unhealthy:
                    log.warning("workload %s: pod %s is unhealthy: its queue grows while its "
                                "GPU idles; not counted as demand (check the engine and GPU)",
                                workload.key, pod.endpoint.pod)
                else:
                    log.info("workload %s: pod %s is healthy again", workload.key,
                             pod.endpoint.pod)
            if health == "saturated":
                saturated.append(pod)
        return saturated

    async def _read_target_replicas(self, workload: Workload) -> None:
        """The Deployment's/StatefulSet's replica count from its scale subresource, every
        ``TARGET_REPLICAS_EVERY_S`` (one GET per workload, not one per scrape)."""
        assert workload.discovery is not None
        now = self.clock.monotonic()
        last = workload.target_replicas_read_s
        if last is not None and now - last < TARGET_REPLICAS_EVERY_S:
            return
        workload.target_replicas_read_s = now
        try:
            workload.target_replicas = await workload.discovery.replicas()
        except DiscoveryError as exc:
            log.warning("workload %s: %s; counting pods instead", workload.key, exc)
            workload.target_replicas = None

    def _sync_discovery(self, workload: Workload) -> None:
        """Start (or retarget) the pod watch of a workload that names a Kubernetes target."""
        target = _target(workload)
        current = workload.discovery
        if current is not None and current.target == target:
            return
        if current is not None:
            self.spawn(current.stop(), f"stop discovery {workload.key}")
            workload.discovery = None
            workload.set_endpoints(workload.spec.endpoints)  # back to static endpoints
        if target is None:
            return
        api = self._kube()
        if api is None:
            return
        workload.discovery = PodDiscovery(api, target)
        self.spawn(workload.discovery.start(), f"start discovery {workload.key}")

    def spawn(self, coro: Coroutine[Any, Any, object], name: str) -> None:
        """A short background task, referenced until it ends (asyncio keeps weak refs)."""
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def kube_api(self) -> ApiClient | None:
        """The Kubernetes API client (None, logged once, when there is no API access)."""
        return self._kube()

    def _kube(self) -> ApiClient | None:
        """The Kubernetes API client loaded at start (given, in-cluster or kubeconfig)."""
        if self._kube_api is None and self._kube_problem is not None:
            log.error("no Kubernetes API access: %s", self._kube_problem)
        return self._kube_api

    def _history_query(self, workload: Workload) -> str | None:
        prometheus = self.config.prometheus
        template = workload.spec.history_query or prometheus.history_query
        if workload.planner is None or not prometheus.url or not template:
            return None
        return template.replace("{namespace}", workload.key.namespace).replace(
            "{scaledobject}", workload.key.name)

    async def warm_start(self, workload: Workload, query: str) -> None:
        """Teach a new workload's forecaster its Prometheus history; on failure, start cold.

        The RPCs never wait for this: until it lands the forecaster simply knows less.
        """
        settings = self.config.prometheus
        now_wall = self.clock.wall()
        assert self._prometheus_session is not None
        try:
            series = await query_range(
                self._prometheus_session, settings.url, query,
                start_s=now_wall - settings.history_s,
                end_s=now_wall, step_s=FORECAST_STEP_S, timeout_s=settings.timeout_s)
        except PrometheusError as exc:
            log.warning("workload %s: no warm start from Prometheus (%s); the forecaster "
                        "starts cold", workload.key, exc)
            self.telemetry.warm_starts.labels("failed").inc()
            return
        planner = workload.planner
        if planner is None or not series.times_s or planner.has_observed:
            self.telemetry.warm_starts.labels("skipped").inc()
            return
        offset = self.clock.monotonic() - now_wall  # history is in wall time, state monotonic
        times = [t + offset for t in series.times_s]
        warmed = DemandForecaster.from_dict(planner.forecaster.to_dict())
        async with self._heavy_work:  # ~50 ms of CPU for two weeks: in a thread, in turn
            await asyncio.to_thread(warmed.warm_start, times, series.values)
        if workload.planner is not planner or planner.has_observed:
            self.telemetry.warm_starts.labels("skipped").inc()
            return
        planner.forecaster = warmed
        planner.warm_started(times[-1])
        self.telemetry.warm_starts.labels("ok").inc()
        log.info("workload %s: forecaster warm-started from %d points of Prometheus history",
                 workload.key, len(times))

    def _refit_when_due(self, workload: Workload) -> None:
        """Start a due refit in the background; refits run one at a time.

        Workloads registered together come due together (a restart, a day later): run at
        once, their refits would hold the interpreter for minutes while scrapes wait.
        """
        planner = workload.planner
        key = workload.key
        if planner is None or key in self._refitting or not planner.forecaster.needs_refit:
            return
        if self.clock.monotonic() < self._refit_after.get(key, -math.inf):
            return
        self._refitting.add(key)
        self.spawn(self._refit_in_turn(workload), f"refit {key}")

    async def _refit_in_turn(self, workload: Workload) -> None:
        try:
            async with self._heavy_work:
                await self.refit_forecast(workload)
        except Exception:  # a bug in fitting must not retry every interval, nor stay silent
            log.exception("workload %s: forecaster refit failed; the old parameters stay, next "
                          "try in %.0f s", workload.key, REFIT_RETRY_S)
            self._refit_after[workload.key] = self.clock.monotonic() + REFIT_RETRY_S
        finally:
            self._refitting.discard(workload.key)

    async def refit_forecast(self, workload: Workload) -> None:
        """Refit the forecaster's parameters on a copy, in a thread, off the event loop."""
        planner = workload.planner
        if planner is None or not planner.forecaster.needs_refit:
            return
        copy = DemandForecaster.from_dict(planner.forecaster.to_dict())
        params = await asyncio.to_thread(copy.fit_params)
        planner.forecaster.set_params(params)

    def _decide(self, workload: Workload) -> None:
        now = self.clock.monotonic()
        saturated = self._check_health(workload, now)
        observation = observe.observation(workload, now, self.config.scrape.stale_after_s)
        previous = workload.decision
        try:
            workload.decision = decide_workload(
                observation, workload.spec,
                None if workload.planner is None else lambda: self._plan(workload, now,
                                                                         saturated),
                replicas=workload.replica_counts()[0], pods_listed=_pods_listed(workload))
            if observe.seen_only_while_serving(workload.spec,
                                               discovered=workload.discovery is not None):
                workload.decision = observe.never_zero(workload.decision, workload.spec)
            if workload.decision.desired_nodes is not None:
                workload.asked_nodes = workload.decision.desired_nodes
            workload.no_decision_reason = None
        except NoData as exc:
            workload.decision = None
            discovery = workload.discovery
            workload.no_decision_reason = str(exc) + observe.why_no_data(
                workload.pods.values(), prometheus_outage=self._prometheus_outage(workload),
                discovery_error=None if discovery is None else discovery.last_error,
                prometheus_selector=workload.spec.prometheus_selector)
        workload.decided_s = now
        workload.scrapes_completed += 1
        if workload.decision and (previous is None or
                                  previous.desired_replicas != workload.decision.desired_replicas):
            log.info("workload %s: %s", workload.key, workload.decision.reason)
        event = self._changed.pop(workload.key, None)
        self._changed[workload.key] = asyncio.Event()
        if event is not None:
            event.set()
        for listener in self.decision_listeners:
            listener(workload)


def _pods_listed(workload: Workload) -> bool:
    """The workload's pods are the Kubernetes API's complete, current list of its ready pods."""
    discovery = workload.discovery
    return (discovery is not None and discovery.synced.is_set()
            and discovery.last_error is None)


def _target(workload: Workload) -> WorkloadTarget | None:
    spec = workload.spec
    namespace = spec.pod_namespace or workload.key.namespace
    port, path = spec.metrics_port, spec.metrics_path
    if spec.deployment:
        return WorkloadTarget(namespace, "Deployment", spec.deployment, None, port, path)
    if spec.stateful_set:
        return WorkloadTarget(namespace, "StatefulSet", spec.stateful_set, None, port, path)
    if spec.label_selector:
        return WorkloadTarget(namespace, "selector", "", spec.label_selector, port, path)
    return None


def _capacity_matches(planner: PredictivePlanner, spec: WorkloadSpec) -> bool:
    capacity = planner.capacity
    return (capacity.profile.name == spec.profile  # profile files are named after their name
            and capacity.slo_ttft_s == spec.slo_ttft_s)


def _joined(problems: list[str]) -> str:
    if not problems:
        return "no page received yet"
    shown = problems[:3]
    more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
    return "; ".join(shown) + more

