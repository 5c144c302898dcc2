"""One workload's background work: its scrape loop, what a round reads, and its decision.

A runner exists from a workload's registration to its drop. Every ``scrape.interval_s`` (at
a random phase, so workloads registered together do not scrape in the same instant) a round
takes the pods discovery lists ready, reads the target's replica count now and then, fetches
every pod page (or reads them from Prometheus) and the GPU pages, then decides: the health
check, the observation and the decision (``scaler.model``), the predictive plan. RPCs only
read what the last decision left in the workload, and wait on ``changed`` for the next one.
Scrape problems are logged once when they start and once when they end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import TYPE_CHECKING

from adapters.formats.dcgm import GpuLoad, gpu_load_all, gpu_load_by_pod, read_dcgm
from adapters.formats.promtext import PageError
from adapters.formats.vllm import read_page
from adapters.kubernetes.discovery import PodDiscovery
from adapters.kubernetes.errors import DiscoveryError
from adapters.kubernetes.pods import WorkloadTarget
from adapters.sources.scrape import ScrapeError
from scaler.keda.metadata import WorkloadSpec
from scaler.model import observe
from scaler.model.fleet_decision import FleetDecision, decide_fleet
from scaler.model.fleet_decision import Workload as FleetWorkload
from scaler.model.specs import Endpoint
from scaler.service.forecasting import RefitState
from scaler.service.supervise import DONE, supervise
from scaler.service.workloads import READ_HISTOGRAMS, Workload

if TYPE_CHECKING:
    from scaler.service.service import ScalerService

log = logging.getLogger("scaler.service")

TARGET_REPLICAS_EVERY_S = 30.0


class WorkloadRunner:
    def __init__(self, service: ScalerService, workload: Workload) -> None:
        self.service = service
        self.workload = workload
        self.changed = asyncio.Event()  # set by the next decision, then replaced
        self.first_round = asyncio.Event()  # set once the first round is over (first_scrape)
        self.refit = RefitState()

    def start(self) -> None:
        """The warm start of its forecaster, if it has history, and (``background``) its
        scrape loop: both last, and ``ScalerService.stop`` cancels them."""
        service, workload = self.service, self.workload
        query = service.forecasting.history_query(workload)
        if query is not None:
            service.run_until_stop(service.forecasting.warm_start(workload, query),
                                   f"warm start {workload.key}")
        if service.background:
            service.run_until_stop(self.run(), f"scrape {workload.key}")

    async def run(self) -> None:
        """Scrape at once (a new workload needs data), then every interval at a random phase,
        until the workload is dropped (idle) or replaced."""
        interval = self.service.config.scrape.interval_s
        await self._first_pod_list()
        await supervise(f"workload {self.workload.key}: scrape round", self._round, interval,
                        log=log, clock=self.service.clock, sharp=True,
                        phase_s=random.uniform(0.0, interval))

    async def _first_pod_list(self) -> None:
        """A discovered workload's first round waits for its first pod list (at most
        ``scrape.timeout_s``), or it would find no pods and decide nothing for an interval."""
        discovery = self.workload.discovery
        if discovery is not None and not discovery.synced.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(discovery.synced.wait(),
                                       self.service.config.scrape.timeout_s)

    async def _round(self) -> object:
        service, workload = self.service, self.workload
        try:
            if service.registry.get(workload.key) is not workload:
                return DONE
            if service.registry.is_idle(workload, service.clock.monotonic()):
                service.drop(workload)
                return DONE
            await service.scrape(workload)  # through the service: a subclass may watch rounds
            service.forecasting.refit_when_due(workload, self.refit)
            return None
        finally:
            self.first_round.set()

    async def scrape(self) -> None:
        """One round: every pod page and GPU page, then a new decision."""
        service, workload = self.service, self.workload
        if service.fetcher is None:
            raise RuntimeError("ScalerService.start() must be awaited before scraping")
        spec = workload.spec
        if workload.discovery is not None:
            if not workload.discovery.synced.is_set():
                return
            workload.set_endpoints(Endpoint(pod, url)
                                  for pod, url in workload.discovery.ready_endpoints())
            await self._read_target_replicas()
        urls = list(workload.pods)
        if spec.metrics_source == "prometheus" and service.prometheus_source is not None:
            urls = await service.prometheus_source.read(workload)
        await asyncio.gather(
            *(self._scrape_pod(spec, url) for url in urls),
            self._scrape_gpus(spec),
        )
        self.decide()

    async def _scrape_pod(self, spec: WorkloadSpec, url: str) -> None:
        service, workload = self.service, self.workload
        assert service.fetcher is not None
        labels = (workload.key.namespace, workload.key.name, "inference")
        timer = service.telemetry.scrape_duration.labels("inference").time()
        try:
            with timer:
                text = await service.fetcher.fetch(url)
                snapshot = read_page(text, server=spec.server, model_name=spec.model_name,
                                     histograms=READ_HISTOGRAMS)
        except (ScrapeError, PageError) as exc:
            kind = exc.kind if isinstance(exc, ScrapeError) else "bad_page"
            service.telemetry.scrape_errors.labels(*labels, kind).inc()
            if url in workload.pods and workload.record_failure(url, f"{url}: {exc}"):
                log.warning("workload %s: pod %s: %s", workload.key,
                            workload.pods[url].endpoint.pod, exc)
            return
        if url not in workload.pods:  # endpoints changed while the page was in flight
            return
        if snapshot.bad_lines:
            service.telemetry.bad_lines.labels(*labels).inc(snapshot.bad_lines)
        cleared = workload.record_page(url, service.clock.monotonic(), snapshot)
        if cleared:
            log.info("workload %s: pod %s recovered (was: %s)", workload.key,
                     workload.pods[url].endpoint.pod, cleared)

    async def _scrape_gpus(self, spec: WorkloadSpec) -> None:
        service, workload = self.service, self.workload
        if not spec.gpu_endpoints:
            if service.gpu_index is not None:
                workload.gpu_by_pod = self._indexed_gpus()
            return
        assert service.fetcher is not None
        pods = {e.pod for e in spec.endpoints}
        loads = {}
        for url in spec.gpu_endpoints:
            try:
                with service.telemetry.scrape_duration.labels("gpu").time():
                    readings = read_dcgm(await service.fetcher.fetch(url))
            except (ScrapeError, PageError) as exc:
                kind = exc.kind if isinstance(exc, ScrapeError) else "bad_page"
                service.telemetry.scrape_errors.labels(
                    workload.key.namespace, workload.key.name, "gpu", kind).inc()
                self._note_gpu_problem(url, str(exc))
                continue
            self._note_gpu_problem(url, None)
            by_pod = gpu_load_by_pod(readings, workload.key.namespace)
            matched = {pod: load for pod, load in by_pod.items() if pod in pods}
            loads.update(matched or {url: gpu_load_all(readings)})
        workload.gpu_by_pod = loads

    def _indexed_gpus(self) -> dict[str, GpuLoad]:
        index, workload = self.service.gpu_index, self.workload
        assert index is not None
        namespace = workload.spec.pod_namespace or workload.key.namespace
        found = {}
        for pod in workload.pods.values():
            load = index.load(namespace, pod.endpoint.pod)
            if load is not None:
                found[pod.endpoint.pod] = load
        return found

    def _note_gpu_problem(self, url: str, problem: str | None) -> None:
        workload = self.workload
        previous = workload.gpu_problems.pop(url, None)
        if problem is not None:
            workload.gpu_problems[url] = problem
            if problem != previous:
                log.warning("workload %s: GPU metrics %s: %s", workload.key, url, problem)
        elif previous is not None:
            log.info("workload %s: GPU metrics %s recovered", workload.key, url)

    async def _read_target_replicas(self) -> None:
        """The Deployment's/StatefulSet's replica count from its scale subresource, every
        ``TARGET_REPLICAS_EVERY_S`` (one GET per workload, not one per scrape)."""
        workload = self.workload
        assert workload.discovery is not None
        now = self.service.clock.monotonic()
        last = workload.target_replicas_read_s
        if last is not None and now - last < TARGET_REPLICAS_EVERY_S:
            return
        workload.target_replicas_read_s = now
        try:
            workload.target_replicas = await workload.discovery.replicas()
        except DiscoveryError as exc:
            log.warning("workload %s: %s; counting pods instead", workload.key, exc)
            workload.target_replicas = None

    def sync_discovery(self) -> None:
        """Start (or retarget) the pod watch of a workload that names a Kubernetes target."""
        service, workload = self.service, self.workload
        target = target_of(workload)
        current = workload.discovery
        if current is not None and current.target == target:
            return
        if current is not None:
            service.spawn(current.stop(), f"stop discovery {workload.key}")
            workload.discovery = None
            workload.set_endpoints(workload.spec.endpoints)  # back to static endpoints
        if target is None:
            return
        api = service.kube_api()
        if api is None:
            return
        workload.discovery = PodDiscovery(api, target)
        service.spawn(workload.discovery.start(), f"start discovery {workload.key}")

    # -- the decision ------------------------------------------------------------------------

    def decide(self) -> None:
        """The workload's whole decision (``scaler.model.fleet_decision``, as the replay runs
        it); here only what it amounts to: the answer kept, changes logged, listeners told."""
        service, workload = self.service, self.workload
        now = service.clock.monotonic()
        previous = workload.decision
        spec = workload.spec
        keep_one = observe.seen_only_while_serving(spec,
                                                   discovered=workload.discovery is not None)
        result = decide_fleet(workload, workload.planner,
                              FleetWorkload(spec.targets, spec.bounds, spec.nodes, keep_one),
                              now_s=now, stale_after_s=service.config.scrape.stale_after_s,
                              pods_listed=_pods_listed(workload))
        self._log_health(result)
        workload.decision = result.decision
        if result.decision is None:
            discovery = workload.discovery
            workload.no_decision_reason = str(result.no_data) + observe.why_no_data(
                workload.pods.values(), prometheus_outage=service.prometheus_outage(workload),
                discovery_error=None if discovery is None else discovery.last_error,
                prometheus_selector=spec.prometheus_selector)
        else:
            if result.decision.desired_nodes is not None:
                workload.asked_nodes = result.decision.desired_nodes
            workload.no_decision_reason = None
        workload.decided_s = now
        workload.scrapes_completed += 1
        if workload.decision and (previous is None or
                                  previous.desired_replicas != workload.decision.desired_replicas):
            log.info("workload %s: %s", workload.key, workload.decision.reason)
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()
        for listener in service.decision_listeners:
            listener(workload)

    def _log_health(self, result: FleetDecision) -> None:
        """One line per pod turning stuck, and one when it is healthy again."""
        workload = self.workload
        for url in result.turned_unhealthy:
            log.warning("workload %s: pod %s is unhealthy: requests wait while its GPU idles "
                        "or none completes; not counted as demand (check the engine and GPU)",
                        workload.key, workload.pods[url].endpoint.pod)
        for url in result.recovered:
            log.info("workload %s: pod %s is healthy again", workload.key,
                     workload.pods[url].endpoint.pod)


def _pods_listed(workload: Workload) -> bool:
    """The workload's pods are the Kubernetes API's complete, current list of its ready pods."""
    discovery = workload.discovery
    return (discovery is not None and discovery.synced.is_set()
            and discovery.last_error is None)


def target_of(workload: Workload) -> WorkloadTarget | None:
    """The Kubernetes object whose pods are the workload's, None for static endpoints."""
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
