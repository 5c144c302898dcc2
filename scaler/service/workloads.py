"""What the service knows about each workload, between scrapes and RPCs.

A workload is one ScaledObject trigger: (namespace, ScaledObject name, metric
name). It is registered by its first RPC, scraped in the background from then
on and dropped when KEDA stops asking. Its state is plain data with no I/O and
no asyncio: the scrape loop writes pages and failures into it; RPCs read the
latest decision out of it. Time is passed in (monotonic seconds) so staleness
and expiry are tested with a hand-moved clock. What the pods amount to (their
health, what the decision observes, what the planner sees) is the pure rules'
business (``scaler.model.observe``), which read this state as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from adapters.formats.dcgm import GpuLoad
from adapters.formats.vllm import VllmSnapshot
from adapters.formats.window import PodWindow
from scaler.keda.metadata import WorkloadSpec
from scaler.model.predictive import Plan, PredictivePlanner
from scaler.model.reactive import Decision
from scaler.model.saturation import QueueStreak
from scaler.model.specs import Endpoint

if TYPE_CHECKING:  # only its type: the service starts it (aiohttp, kubernetes_asyncio)
    from adapters.kubernetes.discovery import PodDiscovery

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
    queue: QueueStreak = field(default_factory=QueueStreak)  # pages in a row with a queue
    taught_s: float | None = None  # newest page of the window that last taught capacity

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
        if newest is None or at > newest or not snapshot.waiting > 0:
            # A page at the same time adds no page to a streak, but an empty queue ends one.
            pod.queue = pod.queue.after(at, snapshot.waiting, max_gap_s=self.rate_window_s)
        cleared, pod.problem = pod.problem, None
        return cleared

    def record_failure(self, url: str, problem: str) -> bool:
        """Store a failed scrape; True when the problem is new (log once per change)."""
        pod = self.pods[url]
        changed = pod.problem != problem
        pod.problem = problem
        return changed

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

