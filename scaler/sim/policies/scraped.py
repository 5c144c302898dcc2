"""The replay's pods as the service's workload state holds them, page after page.

The predictive policy decides with the service's own decision (``scaler.model.fleet_decision``),
which reads per-pod rate windows, queue streaks and GPU loads, not the simulator's truth.
``ScrapedFleet.read`` does what the service's scrape round does with each ready pod's page:
the page becomes a snapshot in the pod's rate window (counters turn into rates there), the
queue streak follows it, and the GPU's busy seconds between two pages become dcgm-exporter's
utilisation. A pod that is no longer ready is gone from the list, as discovery drops it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from adapters.formats.dcgm import GpuLoad
from adapters.formats.vllm import VllmSnapshot
from adapters.formats.window import PodWindow
from scaler.config.settings import ScrapeSettings
from scaler.model.predictive import Plan
from scaler.model.saturation import QueueStreak
from scaler.model.specs import Endpoint
from scaler.sim.pages import PodPage
from scaler.sim.policies.view import ClusterView

_SCRAPE = ScrapeSettings()
RATE_WINDOW_S, STALE_AFTER_S = _SCRAPE.rate_window_s, _SCRAPE.stale_after_s  # the service's


class _Window(PodWindow):
    """A rate window that remembers its rates until the next page (the decision asks for
    each several times per page; a 14-day replay asks millions of times)."""

    def __init__(self, window_s: float) -> None:
        super().__init__(window_s)
        self._rates: dict[str, float | None] = {}

    def add(self, t_s: float, snap: VllmSnapshot) -> None:
        self._rates.clear()
        super().add(t_s, snap)

    def rate(self, counter: str) -> float | None:
        if counter not in self._rates:
            self._rates[counter] = super().rate(counter)
        return self._rates[counter]


@dataclass
class ScrapedPod:
    """One pod's pages so far (``scaler.model.fleet_decision.DecidingPod``)."""

    endpoint: Endpoint
    window: PodWindow
    snapshot: VllmSnapshot | None = None
    last_ok_s: float | None = None
    unhealthy: bool = False
    queue: QueueStreak = field(default_factory=QueueStreak)
    taught_s: float | None = None
    gpu_busy: tuple[float, float] | None = None  # (page time, busy seconds) of the last page

    def is_fresh(self, now_s: float, stale_after_s: float) -> bool:
        return self.last_ok_s is not None and now_s - self.last_ok_s <= stale_after_s

    def read(self, now_s: float, page: PodPage, rate_window_s: float) -> GpuLoad | None:
        """Take one page; the GPU's load since the last page (None: no dcgm data yet)."""
        counters = {"request_success": page.completed, "prompt_tokens": page.prompt_tokens,
                    "generation_tokens": page.generation_tokens}
        self.snapshot = VllmSnapshot(page.waiting, page.running, page.kv_cache_usage, counters,
                                     {}, frozenset(), 0)
        self.window.add(now_s, self.snapshot)
        self.last_ok_s = now_s
        self.queue = self.queue.after(now_s, page.waiting, max_gap_s=rate_window_s)
        last, self.gpu_busy = self.gpu_busy, (
            None if page.gpu_busy_s is None else (now_s, page.gpu_busy_s))
        if last is None or self.gpu_busy is None or not now_s > last[0]:
            return None
        share = (self.gpu_busy[1] - last[1]) / (now_s - last[0])
        return GpuLoad(1, 100.0 * min(1.0, max(0.0, share)), None, math.nan, math.nan)


@dataclass
class ScrapedFleet:
    """One workload's pods by URL (``scaler.model.fleet_decision.DecidingFleet``)."""

    rate_window_s: float = RATE_WINDOW_S
    pods: dict[str, ScrapedPod] = field(default_factory=dict)
    gpu_by_pod: dict[str, GpuLoad] = field(default_factory=dict)
    plan: Plan | None = None
    counts: tuple[int, int, int] = (0, 0, 0)

    def replica_counts(self) -> tuple[int, int, int]:
        return self.counts

    def read(self, view: ClusterView) -> None:
        """One scrape round: every ready pod's page, and the Deployment's counts."""
        pods, gpus = {}, {}
        for name, page in view.pages.items():
            url = f"http://{name}:8000/metrics"
            pod = self.pods.get(url) or ScrapedPod(Endpoint(name, url),
                                                   _Window(self.rate_window_s))
            gpu = pod.read(view.now_s, page, self.rate_window_s)
            if gpu is not None:
                gpus[name] = gpu
            pods[url] = pod
        self.pods, self.gpu_by_pod = pods, gpus
        starting = view.starting_replicas + view.pending_replicas
        self.counts = (view.replicas, starting, view.pending_replicas)
