"""Reads workloads' pod metrics from Prometheus (``metricsSource: prometheus``).

One query per workload and round (see ``adapters.sources.prometheus_pods``). What Prometheus cannot
give is scraped from the pods directly in the same round, where the pods' URLs are known:
every pod while Prometheus is down or slow (for ``RETRY_AFTER_S`` after a failure, for all
workloads at once, so an outage costs one timeout, not one per workload and round), and each
pod it holds no recent sample of (a pod that just started). Prometheus has its own small
connection pool: a stalled one never holds the connections the pod scrapes need. A workload
named only by ``prometheusSelector`` has no URLs to fall back to; its data then ages until
KEDA's fallback applies, as with any other outage. Unless ``tenancy.cross_namespace``, a
``prometheusSelector`` is held to the ScaledObject's namespace: ``namespace="<its>"`` is added
(the selector itself was checked not to name another one).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import aiohttp

from adapters.formats.promql import Matcher
from adapters.formats.promtext import PageError
from adapters.formats.vllm import read_samples, sample_names
from adapters.sources.prometheus import PrometheusError
from adapters.sources.prometheus_pods import (
    PodSamples,
    pod_matchers,
    query_pod_samples,
    samples_query,
)
from scaler.clock import Clock
from scaler.config.settings import PrometheusSettings, ServiceConfig
from scaler.model.specs import Endpoint
from scaler.service.telemetry import Telemetry
from scaler.service.workloads import READ_HISTOGRAMS, Workload, WorkloadKey

log = logging.getLogger("scaler.prometheus_source")

URL_PREFIX = "prometheus:"  # pods known only from Prometheus; never fetched
RETRY_AFTER_S = 30.0  # after Prometheus failed, pods are scraped directly this long


class PrometheusSource:
    def __init__(self, session: aiohttp.ClientSession, config: Callable[[], ServiceConfig],
                 clock: Clock, telemetry: Telemetry) -> None:
        self._session = session
        self._config = config
        self._clock = clock
        self._telemetry = telemetry
        self._problems: dict[WorkloadKey, str] = {}  # workload -> the current outage
        self._skip_until = -math.inf  # after a failure, every workload scrapes pods directly

    def query(self, workload: Workload) -> str | None:
        """The workload's query, or None when it has no pod to ask about yet."""
        spec, settings = workload.spec, self._settings()
        matchers = spec.prometheus_selector or ""
        if matchers and not self._config().tenancy.cross_namespace:
            matchers = f"{Matcher('namespace', '=', workload.key.namespace)},{matchers}"
        if spec.endpoints or workload.discovery is not None:
            pods = [p.endpoint.pod for p in workload.pods.values()]
            if not pods:
                return None
            namespace = spec.pod_namespace or workload.key.namespace
            own = pod_matchers(namespace, pods, settings.pod_label)
            matchers = f"{own},{matchers}" if matchers else own
        return samples_query(sample_names(spec.server, READ_HISTOGRAMS), matchers,
                             settings.source_lookback_s)

    async def read(self, workload: Workload) -> list[str]:
        """Record what Prometheus holds; returns the pod URLs to scrape directly instead."""
        direct = [url for url in workload.pods if not url.startswith(URL_PREFIX)]
        query = self.query(workload)
        if query is None or self._clock.monotonic() < self._skip_until:
            return direct
        settings = self._settings()
        try:
            with self._telemetry.scrape_duration.labels("prometheus").time():
                found = await query_pod_samples(self._session, settings.url, query,
                                                pod_label=settings.pod_label,
                                                timeout_s=settings.source_timeout_s)
        except PrometheusError as exc:
            self._skip_until = self._clock.monotonic() + RETRY_AFTER_S
            self._outage(workload, str(exc), bool(direct))
            return direct
        self._recovered(workload)
        if not (workload.spec.endpoints or workload.discovery is not None):
            workload.set_endpoints(Endpoint(pod, URL_PREFIX + pod) for pod in sorted(found))
        return [url for url in list(workload.pods) if not self._record(workload, url, found)]

    def _record(self, workload: Workload, url: str, found: dict[str, PodSamples]) -> bool:
        """Store one pod's samples; False when it must be scraped directly instead."""
        pod = workload.pods[url]
        got = found.get(pod.endpoint.pod)
        lookback = self._settings().source_lookback_s
        now, wall = self._clock.monotonic(), self._clock.wall()
        if got is None or wall - got.scraped_s > lookback:
            if url.startswith(URL_PREFIX):
                workload.record_failure(url, f"no sample in Prometheus for {lookback:g} s")
                return True
            return False
        try:
            snapshot = read_samples(got.page, server=workload.spec.server,
                                    histograms=READ_HISTOGRAMS,
                                    model_name=workload.spec.model_name)
        except PageError as exc:
            self._telemetry.scrape_errors.labels(
                workload.key.namespace, workload.key.name, "prometheus", "bad_page").inc()
            if workload.record_failure(url, f"Prometheus samples of {pod.endpoint.pod}: {exc}"):
                log.warning("workload %s: pod %s (from Prometheus): %s", workload.key,
                            pod.endpoint.pod, exc)
            return url.startswith(URL_PREFIX)  # with a URL, the pod's own page may do better
        workload.record_page(url, now, snapshot, sampled_s=now - max(0.0, wall - got.scraped_s))
        return True

    def _settings(self) -> PrometheusSettings:
        return self._config().prometheus

    def problem(self, key: WorkloadKey) -> str | None:
        """Why this workload's pods cannot be read from Prometheus now, None if they can."""
        if key in self._problems:
            return self._problems[key]
        wait = self._skip_until - self._clock.monotonic()
        if wait > 0:
            return f"Prometheus failed for another workload; next try in {wait:.0f} s"
        return None

    def _outage(self, workload: Workload, problem: str, can_fall_back: bool) -> None:
        self._telemetry.scrape_errors.labels(
            workload.key.namespace, workload.key.name, "prometheus", "unreachable").inc()
        if self._problems.get(workload.key) != problem:
            self._problems[workload.key] = problem
            then = "scraping the pods directly" if can_fall_back else (
                "no pod URLs to fall back to (prometheusSelector alone); data will age")
            log.warning("workload %s: cannot read Prometheus: %s; %s until it answers",
                        workload.key, problem, then)

    def _recovered(self, workload: Workload) -> None:
        if self._problems.pop(workload.key, None) is not None:
            log.info("workload %s: Prometheus answers again; reading pod metrics from it",
                     workload.key)

    def forget(self, workload: Workload) -> None:
        self._problems.pop(workload.key, None)
