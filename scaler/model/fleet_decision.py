"""A workload's whole decision from what its pods show: the one call the service and the
replay both make, so the replay measures what the service would answer.

Pure (no I/O, no asyncio; time is passed in). In order, each step the rules of
``scaler.model.observe`` (and ``scaler.model.saturation``) say:

1. **Pod health**: every fresh pod is 'saturated', 'unhealthy' (stuck: its queue is no
   demand), 'warming' or 'ok'; each pod's ``unhealthy`` flag is set from it.
2. **Observation**: the fresh, healthy pods' loads, as the reactive rule reads them.
3. **The decision** (``scaler.model.decision.decide_workload``): for a predictive workload its
   plan, made only once there is something to decide, after
4. **capacity learning** from the saturated pods' measured throughput, and from the other
   healthy pods' requests in flight against their completions (``scaler.model.little``:
   a pod faster than its profile is never saturated, yet shows it; not a pod whose GPU
   reads idle, which serves below its speed); each pod's ``taught_s``
   is set to the newest page of the window it taught; and
5. **what the planner sees** (``fleet_state``): arrivals through ready pods only, so demand is
   unseen (NaN) while replicas start and none serves, and zero at zero; the saturated pods'
   throughput is the plan's floor. The plan is kept in the fleet (``fleet.plan``).
6. A workload that cannot be seen at zero is kept at one replica (``never_zero``).

Missing data is an answer too: ``FleetDecision.no_data`` says why there is no decision
(the caller answers UNAVAILABLE), and the health flags are set all the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from adapters.formats.dcgm import GpuLoad
from adapters.formats.vllm import VllmSnapshot
from adapters.formats.window import PodWindow
from scaler.model import observe
from scaler.model.decision import decide_workload
from scaler.model.observe import Health
from scaler.model.predictive import Plan, PredictivePlanner
from scaler.model.reactive import Decision, NoData
from scaler.model.saturation import QueueStreak
from scaler.model.specs import Endpoint, NodeShape, ReactiveTargets, ReplicaBounds


class DecidingPod(Protocol):
    """An ``observe.ObservedPod`` whose health flag and last taught window the decision sets."""

    unhealthy: bool
    taught_s: float | None

    @property
    def endpoint(self) -> Endpoint: ...
    @property
    def window(self) -> PodWindow: ...
    @property
    def snapshot(self) -> VllmSnapshot | None: ...
    @property
    def last_ok_s(self) -> float | None: ...
    @property
    def queue(self) -> QueueStreak: ...
    def is_fresh(self, now_s: float, stale_after_s: float) -> bool: ...


class DecidingFleet(Protocol):
    """An ``observe.ObservedFleet`` whose last plan the decision keeps."""

    plan: Plan | None

    @property
    def pods(self) -> Mapping[str, DecidingPod]: ...
    @property
    def gpu_by_pod(self) -> Mapping[str, GpuLoad]: ...
    @property
    def rate_window_s(self) -> float: ...
    def replica_counts(self) -> tuple[int, int, int]: ...


@dataclass(frozen=True)
class Workload:
    """What the decision is asked for: the trigger's targets, bounds and node shape."""

    targets: ReactiveTargets
    bounds: ReplicaBounds
    nodes: NodeShape
    keep_one: bool = False  # never zero (``observe.seen_only_while_serving``)


@dataclass(frozen=True)
class FleetDecision:
    """The answer (None with ``no_data``: why there is none), and what changed on the way."""

    decision: Decision | None
    no_data: str | None
    health: Mapping[str, Health]  # fresh pods' health, by URL
    turned_unhealthy: tuple[str, ...]  # URLs, for a log line per change
    recovered: tuple[str, ...]
    saturated: tuple[str, ...]


def decide_fleet(fleet: DecidingFleet, planner: PredictivePlanner | None, workload: Workload,
                 *, now_s: float, stale_after_s: float, pods_listed: bool) -> FleetDecision:
    """The whole decision (module docstring). ``planner``: None for a reactive workload.
    ``pods_listed``: the fleet's pods are the complete list of ready pods (none means none)."""
    health = observe.check_health(fleet, now_s, stale_after_s)
    turned, recovered = _set_health(fleet, health)
    saturated = [fleet.pods[url] for url, h in health.items() if h == "saturated"]
    observation = observe.observation(fleet, now_s, stale_after_s)

    def make_plan() -> Plan:
        assert planner is not None
        below = [pod for url, h in health.items() if h in ("ok", "warming")
                 and observe.gpu_busy(observe.gpu_of(fleet, pod := fleet.pods[url])) is not False]
        for pod in [*observe.learn_capacity(planner.capacity, saturated,
                                            rate_window_s=fleet.rate_window_s),
                    *observe.learn_from_load(planner.capacity, below,
                                             rate_window_s=fleet.rate_window_s)]:
            pod.taught_s = pod.window.newest_s
        fleet.plan = planner.plan(observe.fleet_state(fleet, now_s, stale_after_s, saturated))
        return fleet.plan

    decision: Decision | None = None
    no_data = None
    try:
        decision = decide_workload(
            observation, None if planner is None else make_plan, targets=workload.targets,
            bounds=workload.bounds, nodes=workload.nodes, replicas=fleet.replica_counts()[0],
            pods_listed=pods_listed)
        if workload.keep_one:
            decision = observe.never_zero(decision, workload.nodes)
    except NoData as exc:
        no_data = str(exc)
    return FleetDecision(decision, no_data, health, turned, recovered,
                         tuple(url for url, h in health.items() if h == "saturated"))


def _set_health(fleet: DecidingFleet, health: Mapping[str, Health]
                ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Set each checked pod's ``unhealthy`` flag; the URLs that turned unhealthy, and back."""
    turned: list[str] = []
    recovered: list[str] = []
    for url, verdict in health.items():
        pod = fleet.pods[url]
        stuck = verdict == "unhealthy"
        if stuck != pod.unhealthy:
            pod.unhealthy = stuck
            (turned if stuck else recovered).append(url)
    return tuple(turned), tuple(recovered)
