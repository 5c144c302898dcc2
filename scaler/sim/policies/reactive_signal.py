"""KEDA + HPA on one per-replica signal: the reactive setups users configure by hand.

A KEDA trigger with an ``AverageValue`` target gives the HPA a fleet-wide total; the HPA asks
for ``ceil(total / target)`` replicas (within its tolerance and default behaviour). The
signals are the ones users reach for: requests waiting per replica (a ``prometheus`` trigger
on ``sum(vllm:num_requests_waiting)``), running plus waiting per replica (concurrency, what
Knative's KPA and AIBrix scale on) and request rate per replica (a ``prometheus`` trigger on
``sum(rate(vllm:request_success_total[1m]))``). Each reads only what the ready pods' pages or
Prometheus would show, then goes through the emulated HPA (``scaler.sim.hpa``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from scaler.sim.hpa import HorizontalPodAutoscaler
from scaler.sim.policies.view import ClusterView, PolicyDecision

Signal = Callable[[ClusterView], float]


class SignalPolicy:
    """KEDA + HPA with an ``AverageValue`` target of ``knob_value`` per replica on ``signal``."""

    def __init__(self, *, name: str, knob: str, knob_value: float, signal: Signal,
                 min_replicas: int = 1, max_replicas: int = 1000,
                 hpa: HorizontalPodAutoscaler | None = None) -> None:
        if not knob_value > 0:
            raise ValueError(f"{name}: {knob} must be > 0, got {knob_value!r}")
        self.name, self.knob, self.knob_value = name, knob, knob_value
        self.signal = signal
        self.hpa = hpa or HorizontalPodAutoscaler(min_replicas=min_replicas,
                                                  max_replicas=max_replicas)

    def decide(self, view: ClusterView) -> PolicyDecision:
        value = self.signal(view)
        if not view.pods:
            return PolicyDecision(view.replicas)  # no metrics: the HPA leaves the count
        replicas = self.hpa.desired(view.now_s, current_replicas=max(view.replicas, 1),
                                    metric_value=value, target_value=self.knob_value)
        return PolicyDecision(replicas)


def waiting(view: ClusterView) -> float:
    """Requests waiting, summed over the ready pods."""
    return sum(p.waiting for p in view.pods.values())


def concurrency(view: ClusterView) -> float:
    """Requests running and waiting, summed over the ready pods."""
    return sum(p.running + p.waiting for p in view.pods.values())


class WindowedRate:
    """Arrivals per second over the last ``window_s``, as ``rate(...[1m])`` gives them.

    Prometheus' ``rate`` over a 1-minute range averages the last minute, not the last sync
    period: a rate trigger reacts that much later than the instantaneous arrivals.
    """

    def __init__(self, *, window_s: float = 60.0, interval_s: float = 15.0) -> None:
        self._rates: deque[float] = deque(maxlen=max(1, round(window_s / interval_s)))

    def __call__(self, view: ClusterView) -> float:
        self._rates.append(view.observed_rate)
        return sum(self._rates) / len(self._rates)
