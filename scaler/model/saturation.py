"""When a pod is at capacity, when it is stuck, and what a saturated fleet needs at least.

Pure (no I/O, no clock: times are passed in). Real fleets rarely match the profile the capacity
model starts from (another model, longer prompts, another vLLM version), so what a full pod
really serves is the best evidence of capacity there is, and it must not depend on GPU
metrics, which many clusters do not export.

* **At capacity**: a pod that completes requests while its queue stays non-empty over
  ``STREAK_SCRAPES`` consecutive pages spanning ``STREAK_SPAN_S`` or more, or that has
  requests waiting on a KV cache at least ``FULL_KV_CACHE`` full (vLLM queues there because
  no block is free), measured over ``STREAK_SPAN_S`` at least. A single page with a queue is
  no evidence: a burst queues for a moment on a pod with room to spare.
* **Stuck** (a stall, not saturation): requests wait on a GPU that idles while the queue
  grows, or on a GPU not known to be busy while nothing completes for a whole rate window.
  More replicas do not fix a stuck engine: its queue is no demand and it is no capacity
  evidence. A busy GPU is never called stuck (long requests may finish nothing for a minute);
  an idle one vetoes saturation whatever the queue.
* **The throughput floor**: what the saturated pods complete per pod is what a pod serves;
  the demand seen plus the queue drained needs at least that many pods, whatever the profile
  says (``throughput_floor``).

``QueueStreak`` is the per-pod memory the first rule needs: a small immutable value the
service replaces on every new page (``QueueStreak.after``) and keeps with the pod.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

STREAK_SCRAPES = 3  # consecutive pages with requests waiting
STREAK_SPAN_S = 10.0  # ...spanning at least this long (and the shortest rate measured)
FULL_KV_CACHE = 0.9  # KV-cache use at which requests wait for blocks, not for a turn


@dataclass(frozen=True)
class QueueStreak:
    """Consecutive pages of one pod showing requests waiting: how many, first and last time.

    A page with an empty queue ends the streak; a failed scrape neither extends nor ends it
    (missing data proves nothing), but a gap between two pages longer than ``max_gap_s`` (the
    service passes its rate window) does: what the queue did then is unknown, so a pod unseen
    for an hour, or a host that slept, is not "held for an hour".
    """

    pages: int = 0
    since_s: float = math.nan
    last_s: float = math.nan

    def after(self, t_s: float, waiting: float, max_gap_s: float = math.inf) -> QueueStreak:
        """The streak once a page taken at ``t_s`` shows ``waiting`` requests waiting."""
        if not waiting > 0:
            return QueueStreak()
        if self.pages == 0 or not t_s - self.last_s <= max_gap_s:
            return QueueStreak(1, t_s, t_s)
        return QueueStreak(self.pages + 1, self.since_s, t_s)

    @property
    def span_s(self) -> float:
        """Seconds from the streak's first page to its last (0 without a streak)."""
        return self.last_s - self.since_s if self.pages else 0.0

    def holds(self) -> bool:
        """The queue has stayed non-empty long enough to be more than a burst."""
        return self.pages >= STREAK_SCRAPES and self.span_s >= STREAK_SPAN_S


def stalled(*, waiting: float, served: float | None, gpu_busy: bool | None, growing: bool,
            streak: QueueStreak, rate_window_s: float) -> bool:
    """Requests wait but the pod does not serve them (call only with a full rate window).

    ``served``: requests/s completed over the rate window (None: the counter is unknown,
    which proves nothing). ``gpu_busy``: from dcgm, None without data.
    """
    if not waiting > 0 or gpu_busy is True:
        return False
    if gpu_busy is False and growing:
        return True  # the queue grows while the GPU idles
    held = streak.span_s >= 0.9 * rate_window_s
    return held and served == 0.0  # queued for a whole window, and nothing finished


def at_capacity(*, waiting: float, kv_cache_usage: float | None, served: float | None,
                measured_s: float, gpu_busy: bool | None, streak: QueueStreak) -> bool:
    """The pod serves all it can: see the module docstring. ``measured_s``: the span of the
    window ``served`` was measured over."""
    if not waiting > 0 or gpu_busy is False or measured_s < STREAK_SPAN_S:
        return False
    if served is None or not served > 0:
        return False
    full_cache = kv_cache_usage is not None and kv_cache_usage >= FULL_KV_CACHE
    return streak.holds() or full_cache


def throughput_floor(demand: float, saturated_pods: int, saturated_rate: float) -> int:
    """Pods ``demand`` (requests/s, the queue's drain included) needs when a pod serves what
    the ``saturated_pods`` complete on average (``saturated_rate``, requests/s in all).

    0 without saturated pods (no evidence: the capacity model decides alone).
    """
    if saturated_pods <= 0 or not saturated_rate > 0 or not demand > 0:
        return 0
    per_pod = saturated_rate / saturated_pods
    if not math.isfinite(demand / per_pod):
        return 0  # an impossible reading is no floor (the planner's own need still applies)
    return math.ceil(demand / per_pod - 1e-9)
