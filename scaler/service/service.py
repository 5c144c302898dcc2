"""The scaler service: background scraping into memory, decisions out of memory.

One runner per workload (``scaler.service.runner``) scrapes its pods every
``scrape.interval_s`` (through one shared, concurrency-bounded fetcher), updates the
workload's state and re-runs the policy; its planner is ``scaler.service.forecasting``'s.
RPCs and HTTP requests only read that state, so an answer costs microseconds and never
waits on a slow pod. This module holds what they call and the shared resources' lifecycle.

Errors are answered, not invented: bad metadata raises ``MetadataError``
(INVALID_ARGUMENT), metadata past an operator limit ``LimitExceeded`` (RESOURCE_EXHAUSTED;
``scaler.service.tenancy`` checks them before anything is registered), a workload with no
data yet or only stale data raises ``Unavailable`` (UNAVAILABLE), so KEDA applies the
ScaledObject's fallback. Scrape problems are logged once when they start and once when they
end, with what failed; a caller is told only that pages failed (how would be a port scan).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient

from adapters.kubernetes.client import KubeConfigError, kube_client
from adapters.kubernetes.discovery import PodDiscovery
from adapters.kubernetes.pods import WorkloadTarget
from adapters.sources.gpu_index import GpuIndex
from adapters.sources.guard import AddressGuard, Lookup, system_lookup
from adapters.sources.scrape import PageFetcher
from scaler.clock import Clock, SystemClock
from scaler.config.load import needs_restart
from scaler.config.settings import ServiceConfig
from scaler.keda.metadata import MetadataError, WorkloadSpec, changed_keys, parse_metadata
from scaler.model.reactive import Decision
from scaler.service.errors import LimitExceeded, NamesPending, Unavailable
from scaler.service.forecasting import Forecasting
from scaler.service.pool_admission import admit, clamp_to_pool
from scaler.service.prometheus_scrape import PrometheusSource
from scaler.service.runner import WorkloadRunner, target_of
from scaler.service.supervise import supervise
from scaler.service.telemetry import Telemetry
from scaler.service.tenancy import Admission
from scaler.service.workloads import Workload, WorkloadKey, WorkloadRegistry

__all__ = ["Answer", "LimitExceeded", "ScalerService", "Unavailable", "resolve_naming_hosts"]

log = logging.getLogger("scaler.service")

_METADATA_CACHE_SIZE = 4096
PROMETHEUS_CONNECTIONS = 8  # warm starts and metrics-source queries, all workloads


@dataclass(frozen=True)
class Answer:
    workload: Workload
    decision: Decision
    data_age_s: float


class ScalerService:
    def __init__(self, config: ServiceConfig | None = None, *, clock: Clock | None = None,
                 background: bool = True, kube_api: ApiClient | None = None,
                 lookup: Lookup = system_lookup) -> None:
        """``lookup``: host name -> addresses, for the endpoint checks (tests pass a table)."""
        self.config = config or ServiceConfig()
        self.clock = clock or SystemClock()
        self.background = background
        self.telemetry = Telemetry()
        self.registry = WorkloadRegistry(
            idle_timeout_s=self.config.workloads.idle_timeout_s,
            rate_window_s=self.config.scrape.rate_window_s,
        )
        self.telemetry.watch(lambda: self.registry, self.clock,
                             lambda: self.config.scrape.stale_after_s)
        self._specs: dict[frozenset[tuple[str, str]], WorkloadSpec | MetadataError] = {}
        self.guard = AddressGuard(lambda address: self.config.tenancy.address_problem(address),
                                  lookup=lookup, clock=self.clock.monotonic)
        self.admission = Admission(lambda: self.config, self.guard, self.spec_for)
        self.runners: dict[WorkloadKey, WorkloadRunner] = {}
        self._lasting: set[asyncio.Task[object]] = set()
        self._kube_api = kube_api
        self._kube_problem: str | None = None
        self._background: set[asyncio.Task[object]] = set()
        self.gpu_index: GpuIndex | None = None
        self._gpu_task: asyncio.Task[int] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._prometheus_session: aiohttp.ClientSession | None = None
        self.fetcher: PageFetcher | None = None
        self.prometheus_source: PrometheusSource | None = None
        self._owns_kube_api = False  # created in start() (closed in stop()), not given
        self.forecasting = Forecasting(config=lambda: self.config, clock=self.clock,
                                       telemetry=self.telemetry, spawn=self.spawn)
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
        # Every name is resolved and checked by the guard at each new connection (its own
        # cache), every literal address by the fetcher: no page outside the networks.
        connector = aiohttp.TCPConnector(limit=scrape.max_concurrency, resolver=self.guard,
                                         use_dns_cache=False)
        self._session = aiohttp.ClientSession(connector=connector)
        self.fetcher = PageFetcher(session=self._session, timeout_s=scrape.timeout_s,
                                   max_concurrency=scrape.max_concurrency, guard=self.guard)
        # Prometheus gets its own small pool: a stalled Prometheus must never hold the
        # connections the pod scrapes (and their direct fallback) need.
        self._prometheus_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=PROMETHEUS_CONNECTIONS))
        self.prometheus_source = PrometheusSource(
            self._prometheus_session, lambda: self.config, self.clock, self.telemetry)
        self.forecasting.session = self._prometheus_session
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
        self.gpu_index = GpuIndex(discovery, lambda: self.fetcher, now_s=self.clock.monotonic,
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
        tasks = list(self._lasting)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._lasting.clear()
        await self.guard.close()  # name lookups in flight
        for session in (self._session, self._prometheus_session):
            if session is not None:
                await asyncio.shield(session.close())
        self._session = self._prometheus_session = self.forecasting.session = None
        if self._owns_kube_api and self._kube_api is not None:  # a given client is the giver's
            await self._kube_api.close()
            self._kube_api, self._owns_kube_api = None, False

    @property
    def ready(self) -> bool:
        return self.fetcher is not None

    # -- what RPCs call ----------------------------------------------------------------------

    def resolve(self, namespace: str, name: str, metadata: Mapping[str, str]) -> Workload:
        """The workload an RPC is about, registered (and its scraping started) if new.

        Refused (``MetadataError``, ``LimitExceeded``, ``NamesPending``) before anything is
        registered, fetched or asked of Kubernetes when past the operator's limits.
        """
        spec = self.spec_of(namespace, name, metadata)
        key = WorkloadKey(namespace, name, spec.metric_name)
        known = self.registry.get(key)
        before = None if known is None else known.spec  # touch replaces it
        if known is None:
            self.admission.check_room(len(self.registry))
        workload, is_new, changed = self.registry.touch(key, spec, self.clock.monotonic())
        if is_new:
            self.runners[key] = WorkloadRunner(self, workload)
        if changed:  # the hot path (every RPC) skips this when nothing changed
            self.forecasting.sync_planner(workload)
            self.runners[key].sync_discovery()
        if is_new:
            log.info("workload %s registered: %d endpoint(s)", key, len(spec.endpoints))
            self.runners[key].start()
        elif changed and before is not None:
            self._spec_changed(workload, before)
        return workload

    def _spec_changed(self, workload: Workload, before: WorkloadSpec) -> None:
        """Said once per change, by key, so a change nobody meant (another caller) shows."""
        keys = changed_keys(before, workload.spec) or ["(none by key)"]
        log.info("workload %s: metadata changed by a later call (or the config's tuning), "
                 "keys: %s; the latest applies (if this repeats, two callers send different "
                 "metadata for it)", workload.key, ", ".join(keys))
        self.telemetry.spec_changes.labels(workload.key.namespace, workload.key.name).inc()

    def lookup(self, namespace: str, name: str, metadata: Mapping[str, str]) -> Workload | None:
        """The registered workload an RPC would be about, without counting it as asked; what
        ``resolve`` would refuse is refused the same way."""
        spec = self.spec_of(namespace, name, metadata)
        workload = self.registry.get(WorkloadKey(namespace, name, spec.metric_name))
        if workload is None:
            self.admission.check_room(len(self.registry))
        return workload

    def spec_of(self, namespace: str, name: str, metadata: Mapping[str, str]) -> WorkloadSpec:
        """A trigger's spec (tuning merged in), or what an RPC about it is refused with: bad
        metadata, a limit passed, or a node pool its namespace may not count toward."""
        spec = self.admission.spec(namespace, name, metadata)  # tuning merged, limits checked
        admit(self.config.node_pools.pools, namespace, spec)  # before anything is registered
        return spec

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
        if self.fetcher is not None:
            self.fetcher.timeout_s = config.scrape.timeout_s
        self._specs.clear()
        for workload in self.registry:  # the planner's interval follows scrape.interval_s
            self.forecasting.sync_planner(workload)
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
                cached = clamp_to_pool(self.config.node_pools.pools, parse_metadata(metadata))
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
        if workload.discovery is None and target_of(workload) is not None:
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
            outage = self.prometheus_outage(workload)
            problems = [f"cannot read Prometheus ({outage})"] if outage else []
            failing = len(workload.problems())
            if failing:  # which way each failed is the log's (told apart, it is a port scan)
                problems.append(f"{failing} of {len(workload.pods)} pod page(s) could not be "
                                "fetched or read; the scaler's log says why")
            raise Unavailable(
                f"workload {workload.key}: metrics are stale ({age}, limit "
                f"scrape.stale_after_s={stale_after:g}): " + _joined(problems))
        if workload.decision is None:
            raise Unavailable(f"workload {workload.key}: {workload.no_decision_reason}")
        return Answer(workload, workload.decision, now - freshest)

    def change_event(self, workload: Workload) -> asyncio.Event:
        """An event set at the next decision of this workload (for StreamIsActive); one
        never set if it is no longer registered."""
        runner = self.runners.get(workload.key)
        return asyncio.Event() if runner is None else runner.changed

    def prometheus_outage(self, workload: Workload) -> str | None:
        """Why the workload's pods cannot be read from Prometheus now (metricsSource
        prometheus), None if they can."""
        source = self.prometheus_source
        if source is None or workload.spec.metrics_source != "prometheus":
            return None
        return source.problem(workload.key)

    # -- the workloads' runners --------------------------------------------------------------

    async def scrape(self, workload: Workload) -> None:
        """One scrape round of the workload and its decision, now (its loop calls this)."""
        runner = self.runners.get(workload.key)
        if runner is None or runner.workload is not workload:  # dropped: scraped all the same
            runner = WorkloadRunner(self, workload)
        await runner.scrape()

    def drop(self, workload: Workload) -> None:
        """Forget an idle workload (its runner's loop ends with this)."""
        if workload.discovery is not None:
            self.spawn(workload.discovery.stop(), f"stop discovery {workload.key}")
        log.info("workload %s dropped: KEDA has not asked about it for %.0f s",
                 workload.key, self.registry.idle_timeout_s)
        if self.prometheus_source is not None:
            self.prometheus_source.forget(workload)
        self.registry.remove(workload.key)
        self.runners.pop(workload.key, None)
        self.telemetry.workloads_dropped.inc()
        namespace, name = workload.key.namespace, workload.key.name
        if not any(w.key.namespace == namespace and w.key.name == name for w in self.registry):
            self.telemetry.forget(namespace, name)  # its series, unless a trigger remains

    # -- background tasks and the Kubernetes API ---------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, object], name: str) -> None:
        """A short background task, referenced until it ends (asyncio keeps weak refs)."""
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def run_until_stop(self, coro: Coroutine[Any, Any, object], name: str) -> None:
        """A lasting background task (a scrape loop, a warm start), cancelled by ``stop``."""
        task = asyncio.create_task(coro, name=name)
        self._lasting.add(task)
        task.add_done_callback(self._lasting.discard)

    def kube_api(self) -> ApiClient | None:
        """The Kubernetes API client loaded at start (given, in-cluster or kubeconfig); None,
        logged, when there is no API access."""
        if self._kube_api is None and self._kube_problem is not None:
            log.error("no Kubernetes API access: %s", self._kube_problem)
        return self._kube_api


async def resolve_naming_hosts(service: ScalerService, namespace: str, name: str,
                               metadata: Mapping[str, str]) -> Workload:
    """``service.resolve``, first waiting for the host names the trigger names to be resolved
    (off the event loop) and checked, the first time they are seen."""
    try:
        return service.resolve(namespace, name, metadata)
    except NamesPending as pending:
        await pending.wait()
    return service.resolve(namespace, name, metadata)


def _joined(problems: list[str]) -> str:
    if not problems:
        return "no page received yet"
    shown = problems[:3]
    more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
    return "; ".join(shown) + more

