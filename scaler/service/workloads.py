"""What the service knows about each workload, between scrapes and RPCs.

A workload is one ScaledObject trigger: (namespace, ScaledObject name, metric
name). It is registered by its first RPC, scraped in the background from then
on and dropped when KEDA stops asking. Its state is plain data with no I/O and
no asyncio: the scrape loop writes pages and failures into it; RPCs read the
latest decision out of it. Time is passed in (monotonic seconds) so staleness
and expiry are tested with a hand-moved clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from adapters.formats.dcgm import GpuLoad
from adapters.formats.vllm import VllmSnapshot
from adapters.formats.window import PodWindow, merged_quantile
from adapters.kubernetes.discovery import PodDiscovery
from scaler.keda.metadata import Endpoint, WorkloadSpec
from scaler.model.predictive import FleetState, Plan, PredictivePlanner
from scaler.model.reactive import Decision, FleetObservation, PodLoad

READ_HISTOGRAMS = frozenset({"ttft"})  # the only histogram decisions and /metrics use


class WorkloadKey(NamedTuple):
    namespace: str
    name: str
    metric_name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}/{self.metric_name}"


@dataclass
class PodState:
    endpoint: Endpoint
    window: PodWindow
    snapshot: VllmSnapshot | None = None
    last_ok_s: float | None = None
    problem: str | None = None
    bad_lines: int = 0
    unhealthy: bool = False  # set by the service's health check before each decision

    def is_fresh(self, now_s: float, stale_after_s: float) -> bool:
        return self.last_ok_s is not None and now_s - self.last_ok_s <= stale_after_s


@dataclass
class Workload:
    key: WorkloadKey
    spec: WorkloadSpec
    registered_s: float
    last_asked_s: float
    rate_window_s: float
    pods: dict[str, PodState] = field(default_factory=dict)
    gpu_by_pod: dict[str, GpuLoad] = field(default_factory=dict)
    gpu_problems: dict[str, str] = field(default_factory=dict)
    decision: Decision | None = None
    decided_s: float | None = None
    no_decision_reason: str | None = None
    scrapes_completed: int = 0
    planner: PredictivePlanner | None = None
    plan: Plan | None = None
    discovery: PodDiscovery | None = None
    asked_nodes: int | None = None  # the last node count a decision asked for (kept while
    # the workload is UNAVAILABLE, so missing data never shrinks a node pool)
    target_replicas: int | None = None  # the scale target's spec.replicas, when read
    target_replicas_read_s: float | None = None

    def __post_init__(self) -> None:
        self._sync_pods()

    def update_spec(self, spec: WorkloadSpec) -> bool:
        """Apply new metadata; pods whose URL stays keep their history. True if changed.

        Only a change of static ``endpoints`` touches the pods: a discovered workload's pods
        come from its discovery, and other keys (targets, tuning) must not cost history.
        """
        if spec == self.spec:
            return False
        endpoints_changed = spec.endpoints != self.spec.endpoints
        self.spec = spec
        if endpoints_changed:
            self._sync_pods()
        return True

    def _sync_pods(self) -> None:
        self.set_endpoints(self.spec.endpoints)

    def set_endpoints(self, endpoints: Iterable[Endpoint]) -> None:
        """The pods to scrape now (static metadata, or what discovery finds ready)."""
        wanted = {e.url: e for e in endpoints}
        self.pods = {
            url: self.pods.get(url) or PodState(endpoint, PodWindow(self.rate_window_s))
            for url, endpoint in wanted.items()
        }
        for url, endpoint in wanted.items():
            self.pods[url].endpoint = endpoint

    def record_page(self, url: str, now_s: float, snapshot: VllmSnapshot,
                    sampled_s: float | None = None) -> str | None:
        """Store a good page; returns the problem it clears, if any (for a recovery log).

        ``sampled_s`` is when the values were taken, if not ``now_s`` (Prometheus' scrape
        time, in the same monotonic seconds): rates are computed between sample times. A
        page not newer than the window's last one only refreshes the pod's freshness.
        """
        pod = self.pods[url]
        pod.snapshot = snapshot
        pod.last_ok_s = now_s
        pod.bad_lines = snapshot.bad_lines
        at = now_s if sampled_s is None else sampled_s
        newest = pod.window.newest_s
        if sampled_s is None or newest is None or at > newest:
            pod.window.add(at, snapshot)
        cleared, pod.problem = pod.problem, None
        return cleared

    def record_failure(self, url: str, problem: str) -> bool:
        """Store a failed scrape; True when the problem is new (log once per change)."""
        pod = self.pods[url]
        changed = pod.problem != problem
        pod.problem = problem
        return changed

    def observation(self, now_s: float, stale_after_s: float) -> FleetObservation:
        """Fresh pods' loads; an unhealthy pod's queue is no demand, so it counts as missing
        (the HPA rule then neither scales up nor down because of it)."""
        loads: dict[str, PodLoad | None] = {}
        unhealthy = 0
        for url, pod in self.pods.items():
            snap = pod.snapshot
            fresh = snap is not None and pod.is_fresh(now_s, stale_after_s)
            unhealthy += fresh and pod.unhealthy
            loads[url] = (
                PodLoad(snap.waiting, snap.running, snap.kv_cache_usage)
                if fresh and snap is not None and not pod.unhealthy
                else None
            )
        return FleetObservation(pods=loads, ttft_p95_s=self.fleet_ttft_quantile(0.95),
                                unhealthy_pods=unhealthy)

    def fleet_ttft_quantile(self, q: float) -> float | None:
        """TTFT quantile of all requests the pods finished within the rate window."""
        return merged_quantile((pod.window for pod in self.pods.values()), "ttft", q)

    def gpu_of(self, pod: PodState) -> GpuLoad | None:
        """The pod's GPUs by its name, else the whole page of a bare-metal node (one pod)."""
        by_name = self.gpu_by_pod.get(pod.endpoint.pod)
        if by_name is not None or len(self.pods) != 1:
            return by_name
        return next(iter(self.gpu_by_pod.values()), None)

    def pod_health(self, pod: PodState) -> str:
        """'saturated', 'unhealthy' (queue grows, GPU idle), 'warming' or 'ok'.

        GPU utilisation reads ~100% whenever a batch runs, so it is only a saturation
        check: a queue with a busy GPU is a full replica; a growing queue on an idle GPU
        is a broken one (stuck engine, lost GPU), which more replicas would not fix.
        """
        snap = pod.snapshot
        if snap is None or pod.window.span_s < 0.9 * self.rate_window_s:
            return "warming"  # a fresh pod's throughput says nothing about capacity yet
        gpu = self.gpu_of(pod)
        busy = _gpu_busy(gpu)
        growing = (pod.window.in_flight_change_per_s() or 0.0) > 0
        if snap.waiting > 0 and growing and busy is False:
            return "unhealthy"
        if snap.waiting > 0 and busy:  # no GPU data: a queue alone may be a burst or a stall
            return "saturated"
        return "ok"

    def fleet_state(self, now_s: float, stale_after_s: float) -> FleetState:
        """What the predictive planner needs, from the pods' fresh windows.

        Arrivals are not exported by vLLM: they are completions plus the growth of what is
        in flight, scaled up for pods without fresh data (below). Nodes are what this
        workload's plan last asked for (the pool sums the
        plans and counts its joining nodes itself), so the planner's rules hold the plan while
        pods are pending and for its node scale-down window.
        """
        fresh = [p for p in self.pods.values()
                 if p.snapshot is not None and p.is_fresh(now_s, stale_after_s)]
        done = sum(r for p in fresh if (r := p.window.rate("request_success")) is not None)
        grown = sum(g for p in fresh if (g := p.window.in_flight_change_per_s()) is not None)
        prompt = sum(r for p in fresh if (r := p.window.rate("prompt_tokens")) is not None)
        output = sum(r for p in fresh if (r := p.window.rate("generation_tokens")) is not None)
        replicas, starting, pending = self.replica_counts()
        planned_nodes = self.plan.nodes if self.plan is not None else 0
        # No pod serves: at zero nothing is served; while replicas start, demand is unseen.
        unseen = 0.0 if replicas == 0 and starting == 0 else math.nan
        # Pods without fresh data are assumed to carry the fresh pods' mean load, so an outage
        # of some pods teaches the forecaster no false drop. (A fresh pod without a rate yet,
        # on its first page, counts as serving nothing: a scale-up must not multiply demand.)
        share = len(self.pods) / len(fresh) if fresh else 1.0
        rate = max(0.0, done + grown) * share if fresh else unseen
        return FleetState(
            now_s=now_s, replicas=replicas, starting_replicas=starting, nodes=planned_nodes,
            ready_nodes=planned_nodes, pending_replicas=pending, observed_rate=rate,
            backlog=sum(p.snapshot.waiting for p in fresh
                        if p.snapshot is not None and not p.unhealthy),
            running=sum(p.snapshot.running for p in fresh if p.snapshot is not None),
            mean_prompt_tokens=prompt / done if done > 0 else 0.0,
            mean_output_tokens=output / done if done > 0 else 0.0)

    def replica_counts(self) -> tuple[int, int, int]:
        """(replicas, not yet serving, pending): from discovery, else the static endpoints."""
        if self.discovery is not None:
            counts = self.discovery.counts()
            starting = counts.starting + counts.pending
            replicas = self.target_replicas
            return (counts.ready + starting if replicas is None else replicas), starting, \
                counts.pending
        never_seen = sum(1 for p in self.pods.values() if p.last_ok_s is None)
        return len(self.pods), never_seen, 0

    def freshest_s(self) -> float | None:
        times = [p.last_ok_s for p in self.pods.values() if p.last_ok_s is not None]
        return max(times) if times else None

    def problems(self) -> list[str]:
        return [p.problem for p in self.pods.values() if p.problem]


class WorkloadRegistry:
    """Workloads by key; registration on first contact, expiry when KEDA stops asking."""

    def __init__(self, *, idle_timeout_s: float, rate_window_s: float) -> None:
        self.idle_timeout_s = idle_timeout_s
        self.rate_window_s = rate_window_s
        self._workloads: dict[WorkloadKey, Workload] = {}

    def __iter__(self) -> Iterator[Workload]:
        return iter(list(self._workloads.values()))

    def __len__(self) -> int:
        return len(self._workloads)

    def get(self, key: WorkloadKey) -> Workload | None:
        return self._workloads.get(key)

    def touch(self, key: WorkloadKey, spec: WorkloadSpec, now_s: float
              ) -> tuple[Workload, bool, bool]:
        """The workload for an RPC, registered if new; (workload, is_new, spec_changed)."""
        workload = self._workloads.get(key)
        if workload is None:
            workload = Workload(key, spec, now_s, now_s, self.rate_window_s)
            self._workloads[key] = workload
            return workload, True, True
        workload.last_asked_s = now_s
        return workload, False, workload.update_spec(spec)

    def is_idle(self, workload: Workload, now_s: float) -> bool:
        return now_s - workload.last_asked_s > self.idle_timeout_s

    def remove(self, key: WorkloadKey) -> None:
        self._workloads.pop(key, None)


def _gpu_busy(gpu: GpuLoad | None) -> bool | None:
    """True/False from dcgm-exporter's engine activity (else utilisation); None: no data."""
    if gpu is None:
        return None
    if gpu.engine_active is not None:
        return gpu.engine_active >= 0.5
    if gpu.util_pct is not None:
        return gpu.util_pct >= 50.0
    return None
