"""The predictive plan: replicas for when a pod started now is ready, nodes for when a node is.

Pure (no I/O, no clock, no asyncio); the service and the replay both call it once per
decision with a ``FleetState`` and get a ``Plan``. The rules, in the order they apply:

1. Demand now is the observed arrival rate plus the backlog drained within
   ``drain_s``. ``need_now`` = the fewest replicas meeting the TTFT SLO at that demand
   (``CapacityModel``): the reactive floor. Where pods are at capacity
   (``scaler.model.saturation``), never fewer than what they complete per pod needs for
   that demand (``throughput_floor``), whatever the capacity model has learnt so far.
2. ``need_ahead`` = the fewest replicas meeting the SLO at the forecast's upper bound
   (times ``headroom``), taken as the largest over every forecast step up to one pod
   lead time (start-up plus one decision interval): a replica asked for now serves then.
3. The target is ``max(need_now, need_ahead)``: the forecast only ever adds capacity.
4. Scale-down follows observed load only: it waits while any replica is still
   starting (its capacity is not proven yet) or any pod is at capacity (a saturated fleet
   is never scaled down), and takes the largest target of the last
   ``scale_down_window_s``; since ``need_now`` is computed by simulating the SLO at
   that count, N-1 replicas are never chosen unless they would still meet it. A fresh
   planner (a restarted scaler) counts the replicas running as a recent target, so a
   restart never scales down before one window has passed: right after a restart no rate
   is known yet (a counter needs two scrapes), and one quiet scrape proves nothing.
5. Scale to zero only when nothing is in flight (no arrivals, nothing waiting or
   running) and the forecast's upper bound over
   the pod lead time is zero (less than half a request expected within it), through the
   same scale-down window; ``active`` stays true while replicas are held and turns true
   as soon as a request is forecast, i.e. before a predicted ramp, so KEDA can start the
   first pod one lead time early.
6. Nodes: the replicas needed at the node lead time (node provisioning + pod start-up
   + one interval) x GPUs per replica / GPUs per node, rounded up, plus spare; never
   fewer than the replica target needs now, never fewer than now while pods are pending
   or nodes are joining, and down only after ``node_scale_down_window_s``.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass, field

from scaler.model.capacity import CapacityModel
from scaler.model.forecast.forecaster import DemandForecaster
from scaler.model.nodes import nodes_for
from scaler.model.saturation import throughput_floor
from scaler.model.specs import NodeShape, PlanSettings, ReplicaBounds

FORECAST_STEP_S = 300.0  # the forecaster's step: decisions come every few seconds, demand
# trends move slower, and a 5-minute step keeps a week of seasonal state small.


@dataclass(frozen=True)
class PlannerSettings:
    """What the planner sizes for: the trigger's plan settings, replica bounds and node shape
    (``scaler.model.specs``), and how often it is asked."""

    plan: PlanSettings = field(default_factory=PlanSettings)
    bounds: ReplicaBounds = field(default_factory=ReplicaBounds)
    nodes: NodeShape = field(default_factory=NodeShape)
    decision_interval_s: float = 15.0
    drain_s: float = 60.0  # a backlog should be gone within this, seconds
    node_scale_down_window_s: float = 1800.0  # a bare-metal node takes 15+ min to get back


@dataclass(frozen=True)
class FleetState:
    """What the planner sees at one decision: counts and the last interval's demand."""

    now_s: float
    replicas: int  # the Deployment's replica count
    starting_replicas: int  # asked for but not serving yet (pending or starting)
    nodes: int
    ready_nodes: int
    pending_replicas: int
    observed_rate: float  # arrivals over the last interval, requests/s
    backlog: float  # requests waiting, fleet-wide
    mean_prompt_tokens: float
    mean_output_tokens: float
    running: float = 0.0  # requests being served now, fleet-wide (known from the first scrape)
    saturated_pods: int = 0  # pods at capacity now (``scaler.model.saturation``)
    saturated_rate: float = 0.0  # requests/s those pods complete, together


@dataclass(frozen=True)
class Plan:
    replicas: int
    nodes: int
    active: bool
    need_now: int
    need_ahead: int
    forecast_mean: float  # requests/s at one pod lead time; NaN: no forecast yet
    forecast_upper: float  # NaN: no forecast yet
    reason: str
    observed_rate: float = 0.0  # requests/s, as given
    replica_capacity: float = 0.0  # saturated requests/s of one replica at current lengths


@dataclass
class ForecastScore:
    """How the one-step-ahead forecast has done lately (exponentially weighted)."""

    weight: float = 0.02  # ~50 steps of memory
    abs_error: float = math.nan  # requests/s
    coverage: float = math.nan  # share of steps at or under the upper bound
    samples: int = 0

    def add(self, actual: float, mean: float, upper: float) -> None:
        error, covered = abs(actual - mean), float(actual <= upper)
        if self.samples == 0:
            self.abs_error, self.coverage = error, covered
        else:
            w = self.weight
            self.abs_error += w * (error - self.abs_error)
            self.coverage += w * (covered - self.coverage)
        self.samples += 1


class PredictivePlanner:
    def __init__(self, settings: PlannerSettings, capacity: CapacityModel,
                 forecaster: DemandForecaster) -> None:
        self.settings = settings
        self.capacity = capacity
        self.forecaster = forecaster
        self._targets: deque[tuple[float, int]] = deque()
        self._node_targets: deque[tuple[float, int]] = deque()
        self._lengths = (512.0, 128.0)  # until requests are seen: vLLM-bench-like lengths
        self._step_start: float | None = None
        self._last_fed_s: float | None = None  # time of the last step mean fed
        self._step_sum = 0.0
        self._step_count = 0
        self.score = ForecastScore()

    def adopt(self, old: PredictivePlanner) -> None:
        """Carry the step clock, recent targets and score over from a replaced planner."""
        self._targets, self._node_targets = old._targets, old._node_targets
        self._step_start, self._last_fed_s = old._step_start, old._last_fed_s
        self._step_sum, self._step_count = old._step_sum, old._step_count
        self._lengths, self.score = old._lengths, old.score

    @property
    def has_observed(self) -> bool:
        """True once the planner has fed its forecaster (a warm start would then clash)."""
        return self._last_fed_s is not None

    def warm_started(self, last_time_s: float) -> None:
        """The forecaster was warm-started with history up to ``last_time_s``."""
        self._last_fed_s = last_time_s
        self._step_start = last_time_s + self.forecaster.step_s

    def plan(self, state: FleetState) -> Plan:
        state = _usable(state)
        self._observe(state.now_s, state.observed_rate)
        s = self.settings
        rate = 0.0 if math.isnan(state.observed_rate) else state.observed_rate
        if rate > 0 and self._fits(state.mean_prompt_tokens, state.mean_output_tokens):
            self._lengths = (state.mean_prompt_tokens, max(state.mean_output_tokens, 1.0))
        lengths = self._lengths
        demand = rate + state.backlog / s.drain_s
        floor = throughput_floor(demand, state.saturated_pods, state.saturated_rate)
        need_now = max(self._need(demand, lengths), floor)
        pod_lead = s.plan.pod_startup_s + s.decision_interval_s
        mean, upper = self._forecast_peak(state.now_s, pod_lead)  # 0 while not ready
        forecasting = self.forecaster.ready
        need_ahead = self._need(upper * s.plan.headroom, lengths) if forecasting else need_now
        idle = rate <= 0 and state.backlog <= 0 and state.running <= 0
        quiet = upper * pod_lead < 0.5  # not even one request expected within the lead time
        to_zero = idle and quiet and s.bounds.min_replicas == 0
        wanted = 0 if to_zero else max(need_now, need_ahead)
        if not self._targets:  # a fresh planner (a restarted scaler) holds what runs for one
            self._targets.append((state.now_s, state.replicas))  # window, idle or not
        target, why = self._replicas(state, wanted, need_now, need_ahead, forecasting)
        if floor and floor == need_now:
            why += (f"; {state.saturated_pods} pod(s) at capacity serve "
                    f"{state.saturated_rate / state.saturated_pods:.3g} req/s each: "
                    f"{demand:.3g} req/s with the queue needs {floor} (saturated)")
        if to_zero:
            why = ("idle, and no request forecast within one pod lead time" if forecasting else
                   "idle, and no forecast yet") + (
                "" if target == 0 else f"; holding {target} for the scale-down window")
        nodes = self._nodes(state, target, lengths)
        active = not (idle and quiet) or target > s.bounds.min_replicas  # held ones keep it on
        if not forecasting:
            mean = upper = math.nan
        return Plan(target, nodes, active=active, need_now=need_now,
                    need_ahead=need_ahead, forecast_mean=mean, forecast_upper=upper,
                    reason=why, observed_rate=rate,
                    replica_capacity=self.capacity.per_replica_rate(*lengths))

    def _need(self, rate: float, lengths: tuple[float, float]) -> int:
        """Replicas meeting the SLO at ``rate``; for throughput alone where no fleet can (one
        prompt alone takes longer than the SLO: long contexts on a tight SLO)."""
        try:
            return self.capacity.replicas_for(rate, *lengths)
        except ValueError:
            return self.capacity.throughput_replicas(rate, *lengths)

    def _fits(self, prompt: float, output: float) -> bool:
        """Lengths worth sizing for: positive, finite and fitting one replica's KV cache."""
        return (math.isfinite(prompt) and math.isfinite(output) and prompt > 0
                and output >= 0 and self.capacity.per_replica_rate(prompt, output) > 0)

    def _observe(self, now_s: float, rate: float) -> None:
        """Feed the forecaster one mean per forecaster step (decisions come faster)."""
        step = self.forecaster.step_s
        if self._step_start is None:
            self._step_start = now_s
        while now_s >= self._step_start + step:
            if self._step_count:
                self._feed(self._step_start, self._step_sum / self._step_count)
            self._step_start += step
            self._step_sum, self._step_count = 0.0, 0
        if not math.isnan(rate):  # a missing reading leaves the step's mean to the others
            self._step_sum += rate
            self._step_count += 1

    def _feed(self, t_s: float, value: float) -> None:
        if self._last_fed_s is not None and t_s - self._last_fed_s <= self.forecaster.step_s:
            prior = self.forecaster.forecast(self.forecaster.step_s)
            self.score.add(value, prior.mean, prior.upper)
        self.forecaster.observe(t_s, value)
        self._last_fed_s = t_s

    def _forecast_peak(self, now_s: float, horizon_s: float) -> tuple[float, float]:
        """Largest mean and upper bound over every forecast step from now to now + horizon.

        Forecast horizons count from the forecaster's last observation, which lags ``now``
        by up to a step (and more right after a warm start that ended earlier).
        """
        step = self.forecaster.step_s
        lag = now_s - self._last_fed_s if self._last_fed_s is not None else 0.0
        end = max(1, math.ceil((horizon_s + lag) / step))
        start = max(1, math.floor(lag / step))
        horizons = [step * k for k in range(start, end + 1)]
        forecasts = [self.forecaster.forecast(h) for h in horizons]
        return max(f.mean for f in forecasts), max(f.upper for f in forecasts)

    def _replicas(self, state: FleetState, wanted: int, need_now: int,
                  need_ahead: int, forecasting: bool) -> tuple[int, str]:
        s = self.settings
        source = "forecast" if need_ahead > need_now else "observed load"
        why = f"{source}: now {need_now}, at +{s.plan.pod_startup_s:g}s {need_ahead}"
        if not forecasting:
            why = (f"no forecast yet (the forecaster needs one {self.forecaster.step_s:g} s step "
                   f"of demand): sized for the observed load, {need_now}")
        self._remember(self._targets, state.now_s, wanted, s.plan.scale_down_window_s)
        target = wanted
        if wanted < state.replicas:
            if state.starting_replicas > 0:
                target, why = state.replicas, why + "; hold: replicas still starting"
            elif state.saturated_pods > 0:  # held, and counted in the window from now
                target = state.replicas
                self._targets.append((state.now_s, target))
                why += (f"; hold: {state.saturated_pods} pod(s) at capacity (a saturated "
                        "fleet is never scaled down)")
            else:
                target = max(t for _, t in self._targets)
                if target > wanted:
                    why += f"; scale-down stabilised over {s.plan.scale_down_window_s:g}s"
        bounded = min(max(target, s.bounds.min_replicas), s.bounds.max_replicas)
        if bounded != target:
            why += f"; bounded to [{s.bounds.min_replicas}, {s.bounds.max_replicas}]"
        return bounded, why

    def _nodes(self, state: FleetState, replicas: int, lengths: tuple[float, float]) -> int:
        s = self.settings
        node_lead = s.plan.node_startup_s + s.plan.pod_startup_s + s.decision_interval_s
        _, upper = self._forecast_peak(state.now_s, node_lead)
        expected = upper * node_lead >= 0.5  # a request within the lead time, not float noise
        ahead = self._need(upper * s.plan.headroom, lengths) if expected else 0
        shape = s.nodes
        wanted = nodes_for(max(ahead, replicas), gpus_per_replica=shape.gpus_per_replica,
                           gpus_per_node=shape.gpus_per_node, spare_nodes=shape.spare_nodes)
        if not self._node_targets:
            self._node_targets.append((state.now_s, state.nodes))
        self._remember(self._node_targets, state.now_s, wanted, s.node_scale_down_window_s)
        if wanted < state.nodes:
            joining = state.nodes > state.ready_nodes
            wanted = state.nodes if state.pending_replicas or joining else max(
                t for _, t in self._node_targets)
        return min(max(wanted, s.nodes.min_nodes), s.nodes.max_nodes)

    @staticmethod
    def _remember(history: deque[tuple[float, int]], now_s: float, value: int,
                  window_s: float) -> None:
        history.append((now_s, value))
        while len(history) > 1 and history[0][0] <= now_s - window_s:  # a 0 s window keeps now
            history.popleft()


def history_step_starts(times_s: list[float], step_s: float = FORECAST_STEP_S) -> list[float]:
    """The planner's step times of a Prometheus history: one step earlier than its timestamps.

    Prometheus labels a range function's value with the end of its window (``rate(x[5m])``
    at T is the rate over the 5 minutes before T), while the planner labels each step's mean
    with its start. Read as they come, the history's days sit one step late against the live
    readings: the daily season learnt 5 minutes late, and the first live step averaging the
    two steps after the history."""
    return [t - step_s for t in times_s]


def _usable(state: FleetState) -> FleetState:
    """Readings the plan can use: an impossible rate (inf, negative) is missing (NaN, which the
    forecaster skips), an impossible backlog or running count is none."""
    def count(value: float) -> float:
        return value if math.isfinite(value) and value >= 0 else 0.0

    rate = state.observed_rate
    return dataclasses.replace(
        state, observed_rate=rate if math.isfinite(rate) and rate >= 0 else math.nan,
        backlog=count(state.backlog), running=count(state.running),
        saturated_rate=count(state.saturated_rate))
