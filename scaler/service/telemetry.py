"""The service's own Prometheus metrics.

Event metrics (scrapes, errors, RPCs) are ordinary counters and histograms.
Per-workload state (signals, decisions, data age) is computed at collection
time by ``WorkloadCollector`` from the registry, so there is no global mutable
gauge to forget to reset when a workload goes away. Each service owns its own
``CollectorRegistry``: tests get a fresh one per service. The event counters labelled by
workload are forgotten with it (``forget``): a name a caller made up once must not stay a
series for the life of the process.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from scaler.clock import Clock
from scaler.model.observe import ttft_quantile
from scaler.service.workloads import Workload

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

_COUNTER_SIGNALS = (
    ("prompt_tokens", "prompt_tokens_per_second"),
    ("generation_tokens", "generation_tokens_per_second"),
    ("request_success", "requests_finished_per_second"),
    ("preemptions", "preemptions_per_second"),
)
_SCRAPE_ERROR_LABELS = ("namespace", "scaledobject", "source", "kind")
_BAD_LINE_LABELS = ("namespace", "scaledobject", "source")


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.scrape_duration = Histogram(
            "scaler_scrape_duration_seconds", "Time to fetch and read one metrics page.",
            ["source"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.scrape_errors = Counter(
            "scaler_scrape_errors_total",
            "Metrics pages that could not be fetched or read, by kind of failure.",
            _SCRAPE_ERROR_LABELS, registry=self.registry,
        )
        self.bad_lines = Counter(
            "scaler_page_bad_lines_total",
            "Malformed lines skipped in metrics pages (the rest of the page was used).",
            _BAD_LINE_LABELS, registry=self.registry,
        )
        self.rpc_requests = Counter(
            "scaler_rpc_requests_total", "KEDA gRPC calls by method and status code.",
            ["method", "code"], registry=self.registry,
        )
        self.rpc_duration = Histogram(
            "scaler_rpc_duration_seconds", "KEDA gRPC call latency.", ["method"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.http_requests = Counter(
            "scaler_http_decision_requests_total",
            "metrics-api JSON decision requests by HTTP status.", ["status"],
            registry=self.registry,
        )
        self.config_reloads = Counter(
            "scaler_config_reloads_total",
            "Config file changes seen, by result (applied or rejected).", ["result"],
            registry=self.registry,
        )
        self.warm_starts = Counter(
            "scaler_forecast_warm_starts_total",
            "Forecaster warm starts from Prometheus history, by result (ok, failed, skipped).",
            ["result"], registry=self.registry,
        )
        self.spec_changes = Counter(
            "scaler_workload_spec_changes_total",
            "Changes of a registered workload's metadata by a later call (or the config's "
            "tuning); the log names the keys.", ["namespace", "scaledobject"],
            registry=self.registry,
        )
        self.workloads_dropped = Counter(
            "scaler_workloads_dropped_total",
            "Workloads dropped because KEDA stopped asking about them.", registry=self.registry,
        )

    def forget(self, namespace: str, scaledobject: str) -> None:
        """Remove every series labelled with this ScaledObject (it is no longer registered),
        so /metrics does not grow with every workload ever seen."""
        for metric, names in ((self.scrape_errors, _SCRAPE_ERROR_LABELS),
                              (self.bad_lines, _BAD_LINE_LABELS)):
            seen = {tuple(sample.labels[n] for n in names)
                    for family in metric.collect() for sample in family.samples
                    if sample.labels.get("namespace") == namespace
                    and sample.labels.get("scaledobject") == scaledobject}
            for values in seen:
                metric.remove(*values)
        with contextlib.suppress(KeyError):  # no change was ever counted
            self.spec_changes.remove(namespace, scaledobject)

    def watch(self, workloads: Callable[[], Iterable[Workload]],
              clock: Clock, stale_after_s: Callable[[], float]) -> None:
        self.registry.register(WorkloadCollector(workloads, clock, stale_after_s))


class WorkloadCollector(Collector):
    def __init__(self, workloads: Callable[[], Iterable[Workload]],
                 clock: Clock, stale_after_s: Callable[[], float]) -> None:
        self._workloads = workloads
        self._clock = clock
        self._stale_after_s = stale_after_s

    def collect(self) -> Iterator[Metric]:
        labels = ["namespace", "scaledobject", "metric"]
        signal = GaugeMetricFamily(
            "scaler_workload_signal",
            "Latest fleet-wide input signal per workload (sum over fresh pods; kv_cache_usage "
            "is the mean).", labels=[*labels, "signal"])
        desired = GaugeMetricFamily(
            "scaler_workload_desired_replicas", "Replicas the scaler asks for.", labels=labels)
        proposal = GaugeMetricFamily(
            "scaler_workload_signal_proposal_replicas",
            "Replicas each signal alone would ask for.", labels=[*labels, "signal"])
        active = GaugeMetricFamily(
            "scaler_workload_active", "1 when IsActive answers true.", labels=labels)
        pods = GaugeMetricFamily(
            "scaler_workload_pods", "Pods by data state.", labels=[*labels, "state"])
        age = GaugeMetricFamily(
            "scaler_workload_data_age_seconds",
            "Age of the freshest good metrics page (absent before the first).", labels=labels)
        replicas = GaugeMetricFamily(
            "scaler_workload_replicas",
            "Replicas the scale target runs (its scale subresource, else the pods found).",
            labels=labels)
        slo = GaugeMetricFamily(
            "scaler_workload_slo_ttft_seconds", "The TTFT SLO the workload is sized for.",
            labels=labels)
        lead = GaugeMetricFamily(
            "scaler_workload_lead_time_seconds",
            "How far ahead the plan looks: pod start-up (kind=pod), node provisioning "
            "(kind=node).", labels=[*labels, "kind"])
        total = GaugeMetricFamily("scaler_workloads", "Workloads registered.")
        predictive = _PredictiveFamilies(labels)
        now = self._clock.monotonic()
        stale_after = self._stale_after_s()
        count = 0
        for w in self._workloads():
            count += 1
            key = [w.key.namespace, w.key.name, w.key.metric_name]
            for name, value in fleet_signals(w, now, stale_after).items():
                signal.add_metric([*key, name], value)
            if w.decision is not None:
                desired.add_metric(key, w.decision.desired_replicas)
                active.add_metric(key, float(w.decision.active))
                for p in w.decision.proposals:
                    proposal.add_metric([*key, p.signal], p.replicas)
            replicas.add_metric(key, w.replica_counts()[0])
            slo.add_metric(key, w.spec.plan.slo_ttft_s)
            lead.add_metric([*key, "pod"], w.spec.plan.pod_startup_s)
            lead.add_metric([*key, "node"], w.spec.plan.node_startup_s)
            fresh = sum(p.is_fresh(now, stale_after) for p in w.pods.values())
            pods.add_metric([*key, "fresh"], fresh)
            pods.add_metric([*key, "missing"], len(w.pods) - fresh)
            pods.add_metric([*key, "unhealthy"], sum(p.unhealthy for p in w.pods.values()))
            predictive.add(w, key)
            freshest = w.freshest_s()
            if freshest is not None:
                age.add_metric(key, now - freshest)
        total.add_metric([], count)
        yield from (signal, desired, proposal, active, pods, age, replicas, slo, lead, total)
        yield from predictive.families()


class _PredictiveFamilies:
    """Per-workload forecast, plan and forecast-quality gauges (predictive workloads only)."""

    def __init__(self, labels: list[str]) -> None:
        self.forecast = GaugeMetricFamily(
            "scaler_workload_forecast_requests_per_second",
            "Demand forecast one pod lead time ahead: mean and the 95% upper bound.",
            labels=[*labels, "bound"])
        self.observed = GaugeMetricFamily(
            "scaler_workload_observed_requests_per_second",
            "Arrival rate now (completions plus growth of requests in flight).", labels=labels)
        self.needed = GaugeMetricFamily(
            "scaler_workload_needed_replicas",
            "Replicas meeting the TTFT SLO: at the demand now, and at the forecast one pod "
            "lead time ahead.", labels=[*labels, "horizon"])
        self.nodes = GaugeMetricFamily(
            "scaler_workload_desired_nodes",
            "Nodes the plan wants one node lead time ahead (advisory without an actuator).",
            labels=labels)
        self.capacity = GaugeMetricFamily(
            "scaler_workload_replica_capacity_requests_per_second",
            "Saturated requests/s of one replica at current lengths (profile x correction).",
            labels=labels)
        self.correction = GaugeMetricFamily(
            "scaler_workload_capacity_correction",
            "Observed over profiled throughput at saturation (1 = the profile).", labels=labels)
        self.error = GaugeMetricFamily(
            "scaler_workload_forecast_abs_error_requests_per_second",
            "Recent absolute error of the one-step-ahead forecast (EWMA).", labels=labels)
        self.coverage = GaugeMetricFamily(
            "scaler_workload_forecast_coverage",
            "Recent share of steps at or under the upper bound (EWMA; aim: 0.95).",
            labels=labels)

    def add(self, w: Workload, key: list[str]) -> None:
        plan, planner = w.plan, w.planner
        if plan is None or planner is None:
            return
        if not math.isnan(plan.forecast_mean):  # absent, not 0, until there is a forecast
            self.forecast.add_metric([*key, "mean"], plan.forecast_mean)
            self.forecast.add_metric([*key, "upper"], plan.forecast_upper)
        self.observed.add_metric(key, plan.observed_rate)
        self.needed.add_metric([*key, "now"], plan.need_now)
        self.needed.add_metric([*key, "lead"], plan.need_ahead)
        self.nodes.add_metric(key, plan.nodes)
        self.capacity.add_metric(key, plan.replica_capacity)
        self.correction.add_metric(key, planner.capacity.correction)
        if planner.score.samples:
            self.error.add_metric(key, planner.score.abs_error)
            self.coverage.add_metric(key, planner.score.coverage)

    def families(self) -> Iterator[Metric]:
        yield from (self.forecast, self.observed, self.needed, self.nodes, self.capacity,
                    self.correction, self.error, self.coverage)


def fleet_signals(workload: Workload, now_s: float, stale_after_s: float) -> dict[str, float]:
    """Fleet-wide signals from fresh pods: sums, KV-cache mean, rates, TTFT, GPU load."""
    fresh = [p for p in workload.pods.values()
             if p.snapshot is not None and p.is_fresh(now_s, stale_after_s)]
    out: dict[str, float] = {}
    if fresh:
        out["waiting"] = sum(p.snapshot.waiting for p in fresh if p.snapshot)
        out["running"] = sum(p.snapshot.running for p in fresh if p.snapshot)
        kv = [p.snapshot.kv_cache_usage for p in fresh
              if p.snapshot and p.snapshot.kv_cache_usage is not None]
        if kv:
            out["kv_cache_usage"] = sum(kv) / len(kv)
    for counter, name in _COUNTER_SIGNALS:
        rates = [r for p in fresh if (r := p.window.rate(counter)) is not None]
        if rates:
            out[name] = sum(rates)
    for q in (0.5, 0.95, 0.99):
        ttft = ttft_quantile(workload.pods.values(), q)
        if ttft is not None:
            out[f"ttft_p{round(q * 100)}_seconds"] = ttft
    util = [g.util_pct for g in workload.gpu_by_pod.values() if g.util_pct is not None]
    if util:
        out["gpu_util_percent"] = sum(util) / len(util)
    active = [g.engine_active for g in workload.gpu_by_pod.values()
              if g.engine_active is not None]
    if active:
        out["gpu_engine_active"] = sum(active) / len(active)
    if workload.gpu_by_pod:
        out["gpu_memory_used_mib"] = sum(g.fb_used_mib for g in workload.gpu_by_pod.values())
    return out
