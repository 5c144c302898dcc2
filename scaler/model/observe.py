"""What a workload's pods show, as the decision and the planner read it.

Pure (no I/O, no asyncio; time is passed in): the service keeps each pod's last page, rate
window and queue streak, and asks these rules what they amount to. Which pods are at capacity
and which are stuck (``scaler.model.saturation``: a stuck replica's queue is not demand), what
the reactive rule observes, what the predictive planner sees (arrivals, backlog, token
lengths, what saturated pods serve), what saturated pods teach the capacity model, and the
decision's last word for a workload that cannot be seen at zero.
The inputs are structural (``ObservedPod``, ``ObservedFleet``): the service's workload state
fits them as it is, and tests can build them by hand.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Iterable, Mapping
from typing import Literal, Protocol, TypeVar

from adapters.formats.dcgm import GpuLoad
from adapters.formats.vllm import VllmSnapshot
from adapters.formats.window import PodWindow, merged_quantile
from scaler.model import saturation
from scaler.model.capacity import CapacityModel
from scaler.model.decision import shape_nodes_for
from scaler.model.little import speed_from_in_flight
from scaler.model.predictive import FleetState, Plan
from scaler.model.reactive import Decision, FleetObservation, PodLoad
from scaler.model.saturation import QueueStreak
from scaler.model.specs import Endpoint, NodeShape

Health = Literal["saturated", "unhealthy", "warming", "ok"]


class ObservedPod(Protocol):
    """One pod as scraped: its last good page, its rate window, its queue streak (replaced on
    every new page), the health flag set by the last health check (``check_health``) and the
    newest page time of the window it last taught the capacity model (``learn_capacity``)."""

    @property
    def endpoint(self) -> Endpoint: ...
    @property
    def window(self) -> PodWindow: ...
    @property
    def snapshot(self) -> VllmSnapshot | None: ...
    @property
    def last_ok_s(self) -> float | None: ...
    @property
    def unhealthy(self) -> bool: ...
    @property
    def queue(self) -> QueueStreak: ...
    @property
    def taught_s(self) -> float | None: ...
    def is_fresh(self, now_s: float, stale_after_s: float) -> bool: ...


Pod = TypeVar("Pod", bound=ObservedPod)


class ObservedFleet(Protocol):
    """One workload's pods (by URL), their GPUs (by pod name) and what is known of its size."""

    @property
    def pods(self) -> Mapping[str, ObservedPod]: ...
    @property
    def gpu_by_pod(self) -> Mapping[str, GpuLoad]: ...
    @property
    def rate_window_s(self) -> float: ...
    @property
    def plan(self) -> Plan | None: ...
    def replica_counts(self) -> tuple[int, int, int]:
        """(replicas, not yet serving, pending)."""
        ...


# -- health ------------------------------------------------------------------------------------


def gpu_busy(gpu: GpuLoad | None) -> bool | None:
    """True/False from dcgm-exporter's engine activity (else utilisation); None: no data."""
    if gpu is None:
        return None
    if gpu.engine_active is not None:
        return gpu.engine_active >= 0.5
    if gpu.util_pct is not None:
        return gpu.util_pct >= 50.0
    return None


def gpu_of(fleet: ObservedFleet, pod: ObservedPod) -> GpuLoad | None:
    """The pod's GPUs by its name, else the whole page of a bare-metal node (one pod)."""
    by_name = fleet.gpu_by_pod.get(pod.endpoint.pod)
    if by_name is not None or len(fleet.pods) != 1:
        return by_name
    return next(iter(fleet.gpu_by_pod.values()), None)


def pod_health(fleet: ObservedFleet, pod: ObservedPod) -> Health:
    """'saturated' (at capacity), 'unhealthy' (stuck), 'warming' or 'ok'
    (``scaler.model.saturation`` has the rules).

    A stall needs a full rate window to be told from a slow start; saturation only a queue
    held over 3 pages, or waiting on a full KV cache, so a saturated fleet is seen within
    seconds. GPU utilisation reads ~100% whenever a batch runs, so a busy GPU proves no
    saturation; an idle one disproves it, and tells a stuck engine from a full one.
    """
    snap = pod.snapshot
    if snap is None:
        return "warming"
    window = pod.window
    full = window.span_s >= 0.9 * fleet.rate_window_s  # else a fresh pod's rate says little
    busy = gpu_busy(gpu_of(fleet, pod))
    served = window.rate("request_success")
    growing = (window.in_flight_change_per_s() or 0.0) > 0
    if full and saturation.stalled(waiting=snap.waiting, served=served, gpu_busy=busy,
                                   growing=growing, streak=pod.queue,
                                   rate_window_s=fleet.rate_window_s):
        return "unhealthy"
    if saturation.at_capacity(waiting=snap.waiting, kv_cache_usage=snap.kv_cache_usage,
                              served=served, measured_s=window.span_s, gpu_busy=busy,
                              streak=pod.queue):
        return "saturated"
    return "ok" if full else "warming"


def check_health(fleet: ObservedFleet, now_s: float, stale_after_s: float) -> dict[str, Health]:
    """The health of each fresh pod, by URL (stale pods keep their last verdict).

    The caller sets each pod's ``unhealthy`` flag from it before observing the fleet; the
    saturated pods' throughput is capacity (``learn_capacity``, ``fleet_state``).
    """
    return {url: pod_health(fleet, pod) for url, pod in fleet.pods.items()
            if pod.is_fresh(now_s, stale_after_s)}


def learn_capacity(capacity: CapacityModel, saturated: Iterable[Pod], *,
                   rate_window_s: float) -> list[Pod]:
    """Correct the capacity model from saturated pods' measured throughput; returns the pods
    that taught it (the caller sets their ``taught_s`` to their window's newest page time).

    One sample per pod per rate window: only a full window (a short one says little) through
    which the queue stayed non-empty (else part of it was served below capacity), and that
    does not overlap the last one the pod taught, so one noisy scrape is one sample, which
    the model's median then outvotes.
    """
    taught = []
    for pod in saturated:
        window, last = pod.window, pod.taught_s
        newest = window.newest_s
        if newest is None or window.span_s < 0.9 * rate_window_s:
            continue
        start = newest - window.span_s
        if not pod.queue.since_s <= start:
            continue  # the queue was empty at some page of the window
        if last is not None and start < last:
            continue  # overlaps the window this pod last taught
        served = window.rate("request_success")
        prompt, output = window.rate("prompt_tokens"), window.rate("generation_tokens")
        if served and prompt is not None and output is not None:
            capacity.observe_saturated(served, prompt / served, output / served)
            taught.append(pod)
    return taught


def learn_from_load(capacity: CapacityModel, pods: Iterable[Pod], *,
                    rate_window_s: float) -> list[Pod]:
    """Correct the capacity model from pods below capacity: their requests in flight over
    their completions against the profile's time in the engine (``scaler.model.little``);
    returns the pods that taught it (the caller sets their ``taught_s``, as for
    ``learn_capacity``). Pass healthy pods that are not saturated: a full pod's batch says
    nothing of its speed (its throughput does), a stuck one nothing at all.

    Same sampling as ``learn_capacity``: one sample per pod per full rate window.
    """
    taught = []
    for pod in pods:
        window, last, snap = pod.window, pod.taught_s, pod.snapshot
        newest = window.newest_s
        if snap is None or newest is None or window.span_s < 0.9 * rate_window_s:
            continue
        if last is not None and newest - window.span_s < last:
            continue
        served = window.rate("request_success")
        prompt, output = window.rate("prompt_tokens"), window.rate("generation_tokens")
        if not served or prompt is None or output is None:
            continue
        speed = speed_from_in_flight(capacity.profile, served, snap.running,
                                     prompt / served, output / served)
        if speed is not None:
            base = capacity.profile.saturated_request_rate(prompt / served, output / served)
            capacity.observe_saturated(speed * base, prompt / served, output / served)
            taught.append(pod)
    return taught


# -- what the decision and the planner see -------------------------------------------------------


def ttft_quantile(pods: Iterable[ObservedPod], q: float) -> float | None:
    """TTFT quantile of all requests the pods finished within the rate window."""
    return merged_quantile((pod.window for pod in pods), "ttft", q)


def observation(fleet: ObservedFleet, now_s: float, stale_after_s: float) -> FleetObservation:
    """Fresh pods' loads; an unhealthy pod's queue is no demand, so it counts as missing
    (the HPA rule then neither scales up nor down because of it)."""
    loads: dict[str, PodLoad | None] = {}
    unhealthy = 0
    for url, pod in fleet.pods.items():
        snap = pod.snapshot
        fresh = snap is not None and pod.is_fresh(now_s, stale_after_s)
        unhealthy += fresh and pod.unhealthy
        loads[url] = (
            PodLoad(snap.waiting, snap.running, snap.kv_cache_usage)
            if fresh and snap is not None and not pod.unhealthy
            else None
        )
    return FleetObservation(pods=loads, ttft_p95_s=ttft_quantile(fleet.pods.values(), 0.95),
                            unhealthy_pods=unhealthy)


def fleet_state(fleet: ObservedFleet, now_s: float, stale_after_s: float,
                saturated: Collection[ObservedPod] = ()) -> FleetState:
    """What the predictive planner needs, from the pods' fresh windows; ``saturated``: the
    pods at capacity now (``check_health``), whose completions are what a pod serves.

    Arrivals are not exported by vLLM: they are completions plus the growth of what is
    in flight (not a stuck pod's queue), scaled up for pods without fresh data (below). Nodes
    are what this workload's plan last asked for (the pool sums the plans and counts its
    joining nodes itself), so the planner's rules hold the plan while pods are pending and
    for its node scale-down window.
    """
    fresh = [p for p in fleet.pods.values()
             if p.snapshot is not None and p.is_fresh(now_s, stale_after_s)]
    done = sum(r for p in fresh if (r := p.window.rate("request_success")) is not None)
    grown = sum(g for p in fresh if not p.unhealthy
                and (g := p.window.in_flight_change_per_s()) is not None)
    prompt = sum(r for p in fresh if (r := p.window.rate("prompt_tokens")) is not None)
    output = sum(r for p in fresh if (r := p.window.rate("generation_tokens")) is not None)
    replicas, starting, pending = fleet.replica_counts()
    planned_nodes = fleet.plan.nodes if fleet.plan is not None else 0
    # No pod serves: at zero nothing is served; while replicas start, demand is unseen.
    unseen = 0.0 if replicas == 0 and starting == 0 else math.nan
    # Pods without fresh data are assumed to carry the fresh pods' mean load, so an outage
    # of some pods teaches the forecaster no false drop. (A fresh pod without a rate yet,
    # on its first page, counts as serving nothing: a scale-up must not multiply demand.)
    share = len(fleet.pods) / len(fresh) if fresh else 1.0
    rate = max(0.0, done + grown) * share if fresh else unseen
    return FleetState(
        now_s=now_s, replicas=replicas, starting_replicas=starting, nodes=planned_nodes,
        ready_nodes=planned_nodes, pending_replicas=pending, observed_rate=rate,
        backlog=sum(p.snapshot.waiting for p in fresh
                    if p.snapshot is not None and not p.unhealthy),
        running=sum(p.snapshot.running for p in fresh if p.snapshot is not None),
        mean_prompt_tokens=prompt / done if done > 0 else 0.0,
        mean_output_tokens=output / done if done > 0 else 0.0,
        saturated_pods=len(saturated),
        saturated_rate=sum(r for p in saturated if (r := p.window.rate("request_success"))))


# -- a workload seen only while it serves ----------------------------------------------------------


class NamedPods(Protocol):
    """How a trigger names its pods (the KEDA metadata's spec is one)."""

    @property
    def endpoints(self) -> tuple[Endpoint, ...]: ...

    @property
    def prometheus_selector(self) -> str | None: ...


def seen_only_while_serving(spec: NamedPods, *, discovered: bool) -> bool:
    """A workload named only by ``prometheusSelector``: at zero replicas its series age out,
    which cannot be told from series gone missing, so it must never be sent to zero."""
    return bool(spec.prometheus_selector) and not spec.endpoints and not discovered


def never_zero(decision: Decision, nodes: NodeShape) -> Decision:
    """The decision, kept at one active replica at least (see ``seen_only_while_serving``)."""
    if decision.active and decision.desired_replicas >= 1:
        return decision
    asked = decision.desired_nodes
    return dataclasses.replace(
        decision, desired_replicas=max(1, decision.desired_replicas), active=True,
        desired_nodes=None if asked is None else max(asked, shape_nodes_for(1, nodes)),
        reason=decision.reason + "; kept at >= 1 and active: a workload named only by "
        "prometheusSelector cannot be seen at zero (name its deployment to scale to zero)")


def why_no_data(pods: Collection[ObservedPod], *, prometheus_outage: str | None,
                discovery_error: str | None, prometheus_selector: str | None) -> str:
    """What to look at when a workload has nothing to decide from (appended to the reason).

    ``discovery_error``: why its pod discovery fails now (None: it does not, or there is
    none).
    """
    if prometheus_outage is not None:
        return f": cannot read Prometheus ({prometheus_outage})"
    if pods:
        unhealthy = sum(pod.unhealthy for pod in pods)
        return (f" ({unhealthy} unhealthy: queue grows while the GPU idles, or nothing "
                "completes; check the engine and GPU)" if unhealthy else "")
    if discovery_error is not None:
        return f": pod discovery is failing ({discovery_error})"
    if prometheus_selector:
        return (": Prometheus has no series for prometheusSelector "
                f"{prometheus_selector!r}; check it matches the vLLM pods' labels")
    return ""
