"""The replay loop: a trace, a simulated fleet with lead times, a policy at KEDA's cadence.

Every ``decision_interval_s`` the policy sees a ``ClusterView`` and sets the
replica count (and nodes, or the cluster-autoscaler emulation does). Between
decisions the fleet serves: request traces through the request-level
``RequestFleet`` (1 s engine steps), rate series through the ``FluidFleet``. A
replica serves only once the cluster says it is ready. The result holds SLO
attainment, TTFT percentiles, GPU- and node-hours and one row per decision.

The oracle's needs (the fewest ready replicas meeting the SLO per time bin) are
computed here from the trace's future, with the same fluid model, and handed
to ``OraclePolicy``; no other policy gets them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from scaler.config.profiles import default_profile
from scaler.model.capacity import CapacityModel
from scaler.model.profile import ReplicaProfile
from scaler.model.queueing import FluidFleet, ReplicaLoad
from scaler.model.reactive import PodLoad
from scaler.model.specs import NodeShape, PlanSettings
from scaler.sim.cluster import Cluster
from scaler.sim.pages import FluidPages, PodPage
from scaler.sim.policies import ClusterAutoscaler, ClusterView, OraclePolicy, Policy
from scaler.sim.request_fleet import RequestFleet, fleet_pages
from scaler.sim.results import DecisionRow, ReplayResult
from scaler.sim.speed import at_speed
from scaler.sim.traces import RateTrace, RequestTrace

Progress = Callable[[float], None]  # fraction done, 0-1


_PLAN, _NODES = PlanSettings(), NodeShape()


@dataclass(frozen=True)
class ReplaySettings:
    """The replayed cluster's lead times and shape; defaults are the trigger metadata's."""

    pod_startup_s: float = _PLAN.pod_startup_s
    node_startup_s: float = _PLAN.node_startup_s
    slo_ttft_s: float = _PLAN.slo_ttft_s
    slo_target: float = 0.99
    gpus_per_replica: int = _NODES.gpus_per_replica
    gpus_per_node: int = _NODES.gpus_per_node
    decision_interval_s: float = 15.0  # the HPA sync period reading KEDA's metric
    fluid_tick_s: float = 5.0
    request_tick_s: float = 0.1
    oracle_bin_s: float = 5.0  # time bins of the oracle's need (request traces: bursts of seconds)
    drain_s: float = 600.0  # request traces: keep serving this long after the last arrival
    scale_down_window_s: float = _PLAN.scale_down_window_s  # the predictive plan's
    min_replicas: int = 1  # the autoscaling policies' bounds (reactive, predictive)
    max_replicas: int | None = None  # None: twice the oracle's peak (policy_catalog)
    fleet_speed: float = 1.0  # the pods serve this many times as fast as the given profile
    gpu_metrics: bool = True  # False: the pods' pages come without dcgm data
    hpa_tolerance: float = 0.0  # the predictive policy's HPA (the shipped ScaledObject's)


def oracle_needs(trace: RequestTrace | RateTrace, settings: ReplaySettings,
                 profile: ReplicaProfile, *, miss_share: float | None = None
                 ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Per time bin: the fewest ready replicas, the SLO's miss budget spent where cheapest.

    ``miss_share`` None: every bin gets the replicas meeting the SLO target within it (how
    the replay sizes its warm start). A share: the bins' counts are chosen together so that
    the misses the fluid model expects stay within ``miss_share`` of all arrivals, at the
    least replica-time (``spend_miss_budget``): one replica fewer in a bin whose few
    requests it costs little is worth more than a 99% within every bin. A planned count
    below what the bin's rate needs in throughput counts all the bin's requests as missed.
    """
    if isinstance(trace, RateTrace):
        starts, rates = trace.start_s, trace.rate
        prompts, outputs, bin_s = trace.mean_prompt, trace.mean_output, trace.step_s
    else:
        starts, rates, prompts, outputs = _binned(trace, settings.oracle_bin_s)
        bin_s = settings.oracle_bin_s
    capacity = CapacityModel(profile, slo_ttft_s=settings.slo_ttft_s,
                             slo_target=settings.slo_target)
    needs = [capacity.replicas_for(r, p, o)
             for r, p, o in zip(rates, prompts, outputs, strict=True)]
    if miss_share is not None:
        options = [_oracle_options(capacity, n, r * bin_s, r, p, o)
                   for n, r, p, o in zip(needs, rates, prompts, outputs, strict=True)]
        needs = spend_miss_budget(options, miss_share * float(np.sum(rates)) * bin_s)
    return np.asarray(starts, dtype=float), np.asarray(needs, dtype=np.int64)


def _oracle_options(capacity: CapacityModel, need: int, arrivals: float, rate: float,
                    prompt: float, output: float) -> tuple[list[int], list[float]]:
    """A bin's candidate counts and the misses each is expected to cost."""
    if need == 0:
        return [0], [0.0]
    lowest = max(1, capacity.throughput_replicas(rate, prompt, output) - 1)
    counts = list(range(lowest, need + 3))
    return counts, [arrivals * (1.0 - capacity.slo_fraction(rate, prompt, output, n))
                    for n in counts]


def spend_miss_budget(options: list[tuple[list[int], list[float]]], budget: float) -> list[int]:
    """Per bin the count among its options; total expected misses within ``budget``.

    A Lagrangian choice: each bin takes the count minimising ``count + price * misses``; the
    lowest price keeping the total within the budget (bisected on a log scale) is the
    cheapest such plan in replica-time up to one bin's step, since misses fall as the price
    rises. Bins have equal length, so replica-time is the sum of counts.
    """
    width = max(len(counts) for counts, _ in options)
    count = np.full((len(options), width), 0.0)
    misses = np.full((len(options), width), np.inf)
    for b, (counts, missed) in enumerate(options):
        count[b, :len(counts)] = counts
        misses[b, :len(counts)] = missed
    rows = np.arange(len(options))

    def choice(price: float) -> tuple[npt.NDArray[np.intp], float]:
        pick = np.argmin(count + price * misses, axis=1)
        return pick, float(misses[rows, pick].sum())

    low, high = -9.0, 9.0  # log10 of the price of one miss, in replicas per bin
    pick, total = choice(10.0 ** high)
    if total <= budget:
        for _ in range(50):
            mid = (low + high) / 2
            trial, total = choice(10.0 ** mid)
            if total <= budget:
                high, pick = mid, trial
            else:
                low = mid
    return [int(c) for c in count[rows, pick]]


def _binned(trace: RequestTrace, bin_s: float) -> tuple[npt.NDArray[np.float64], ...]:
    """Per bin of ``bin_s``: start, arrival rate, mean prompt and output tokens."""
    bins = np.floor(trace.arrival_s / bin_s).astype(np.int64)
    count = int(bins.max()) + 1 if bins.size else 1
    arrivals = np.bincount(bins, minlength=count).astype(float)
    prompt = np.bincount(bins, weights=trace.prompt_tokens, minlength=count)
    output = np.bincount(bins, weights=trace.output_tokens, minlength=count)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(arrivals > 0, prompt / arrivals, 0.0)
        mean_o = np.where(arrivals > 0, output / arrivals, 0.0)
    starts = np.arange(count, dtype=np.float64) * bin_s
    return starts, arrivals / bin_s, mean_p.astype(np.float64), mean_o.astype(np.float64)


def initial_replicas(trace: RequestTrace | RateTrace, settings: ReplaySettings,
                     profile: ReplicaProfile) -> int:
    """Every policy starts warm, sized for the trace's first bin."""
    _, needs = oracle_needs(_head(trace), settings, profile)
    return max(1, int(needs[0]) if needs.size else 1)


def _head(trace: RequestTrace | RateTrace) -> RequestTrace | RateTrace:
    if isinstance(trace, RateTrace):
        return RateTrace(trace.name, trace.step_s, trace.start_s[:1], trace.rate[:1],
                         trace.mean_prompt[:1], trace.mean_output[:1])
    return trace


class _Run:
    """Shared state of one replay: the cluster, the policy, the rows, the cost."""

    def __init__(self, policy: Policy, settings: ReplaySettings, start_replicas: int) -> None:
        self.policy = policy
        self.settings = settings
        self.cluster = Cluster(pod_startup_s=settings.pod_startup_s,
                               node_startup_s=settings.node_startup_s,
                               gpus_per_replica=settings.gpus_per_replica,
                               gpus_per_node=settings.gpus_per_node)
        self.cluster.start_warm(replicas=start_replicas, nodes=0)
        self.autoscaler = ClusterAutoscaler()
        self.rows: list[DecisionRow] = []
        self.scale_events = 0

    def decide(self, now_s: float, pages: dict[str, PodPage], rate: float,
               prompt: float, output: float, loads: dict[str, ReplicaLoad] | None = None
               ) -> None:
        """``loads``: what the reactive policies read, if not the pages' gauges."""
        counts = self.cluster.counts(now_s)
        if not self.settings.gpu_metrics:
            pages = {k: v.without_gpu() for k, v in pages.items()}
        gauges = pages if loads is None else loads
        pods = {k: PodLoad(v.waiting, v.running, v.kv_cache_usage) for k, v in gauges.items()}
        view = ClusterView(now_s, pods, counts.replicas, counts.ready_replicas,
                           counts.starting_replicas, counts.pending_replicas, counts.nodes,
                           counts.ready_nodes, rate, prompt, output, pages)
        decision = self.policy.decide(view)
        if decision.replicas != counts.replicas:
            self.scale_events += 1
            self.cluster.scale_replicas(decision.replicas, now_s)
        nodes = decision.nodes
        if nodes is None:
            nodes = self.autoscaler.nodes(self.cluster, now_s)
        if nodes != len(self.cluster.nodes):
            self.scale_events += 1
            self.cluster.scale_nodes(nodes, now_s)
        after = self.cluster.counts(now_s)
        self.rows.append(DecisionRow(now_s, decision.replicas, after.ready_replicas, nodes,
                                     after.ready_nodes, rate, decision.forecast))

    def result(self, requests: float, slo: float, ttft: npt.NDArray[np.float64],
               parameters: dict[str, object]) -> ReplayResult:
        return ReplayResult(
            policy=self.policy.name, parameters=parameters, requests=requests,
            slo_attainment=slo, ttft_p50_s=float(ttft[0]), ttft_p95_s=float(ttft[1]),
            ttft_p99_s=float(ttft[2]), gpu_hours=self.cluster.gpu_seconds / 3600,
            node_hours=self.cluster.node_seconds / 3600, scale_events=self.scale_events,
            decisions=self.rows)


def replay(trace: RequestTrace | RateTrace, policy: Policy, *,
           settings: ReplaySettings | None = None, profile: ReplicaProfile | None = None,
           progress: Progress | None = None) -> ReplayResult:
    """``profile``: what the scaler starts from; the pods serve ``settings.fleet_speed``
    times as fast (``scaler.sim.speed``)."""
    settings = settings or ReplaySettings()
    profile = profile or default_profile()
    pods = at_speed(profile, settings.fleet_speed)
    start = initial_replicas(trace, settings, pods)
    run = _Run(policy, settings, start)
    parameters: dict[str, object] = {
        "trace": trace.name, "profile": profile.name, "knob": policy.knob,
        "knob_value": policy.knob_value, "initial_replicas": start, **asdict(settings)}
    if isinstance(trace, RateTrace):
        return _replay_rates(trace, run, pods, parameters, progress)
    return _replay_requests(trace, run, pods, parameters, progress)


def make_oracle(trace: RequestTrace | RateTrace, *, settings: ReplaySettings | None = None,
                profile: ReplicaProfile | None = None,
                miss_share: float | None = None) -> OraclePolicy:
    """The oracle planning ``miss_share`` of requests missed (default: the SLO's budget),
    with the pods' true speed (``settings.fleet_speed``)."""
    settings = settings or ReplaySettings()
    profile = at_speed(profile or default_profile(), settings.fleet_speed)
    share = round(1.0 - settings.slo_target, 9) if miss_share is None else miss_share
    times, needs = oracle_needs(trace, settings, profile, miss_share=share)
    return OraclePolicy(need_times_s=times, need_replicas=needs, miss_share=share,
                        pod_lead_s=settings.pod_startup_s, node_lead_s=settings.node_startup_s,
                        interval_s=settings.decision_interval_s,
                        gpus_per_replica=settings.gpus_per_replica,
                        gpus_per_node=settings.gpus_per_node)


def _replay_rates(trace: RateTrace, run: _Run, profile: ReplicaProfile,
                  parameters: dict[str, object], progress: Progress | None) -> ReplayResult:
    s = run.settings
    fleet = FluidFleet(profile, tick_s=s.fluid_tick_s, slo_ttft_s=s.slo_ttft_s)
    ticks = math.ceil(trace.duration_s / s.fluid_tick_s)
    per_decision = max(1, round(s.decision_interval_s / s.fluid_tick_s))
    window = np.minimum((np.arange(ticks) * s.fluid_tick_s / trace.step_s).astype(np.int64),
                        len(trace.rate) - 1)
    arrived = missed = 0.0
    load = ReplicaLoad(0.0, 0.0, 0.0)
    pages = FluidPages()
    for i in range(ticks):
        now = i * s.fluid_tick_s
        w = int(window[i])
        rate, prompt, output = (float(trace.rate[w]), float(trace.mean_prompt[w]),
                                float(trace.mean_output[w]))
        if i % per_decision == 0:
            if run.rows:
                _set_misses(run, -1, missed)
            ready_ids = run.cluster.ready_ids(now)
            run.decide(now, pages.pages(ready_ids), arrived / s.decision_interval_s if i else
                       rate, prompt, output, dict.fromkeys(ready_ids, load))
            arrived = missed = 0.0
            if progress and i % (per_decision * 400) == 0:
                progress(i / ticks)
        run.cluster.advance(now, s.fluid_tick_s)
        ready = run.cluster.counts(now).ready_replicas
        tick = fleet.step(rate=rate, mean_prompt=prompt, mean_output=output,
                          ready_replicas=ready)
        pages.served(tick, ready=ready, mean_prompt=prompt, mean_output=output,
                     tick_s=s.fluid_tick_s)
        load = tick.load
        arrived += tick.arrivals
        missed += tick.arrivals * (1.0 - tick.slo_fraction)
    _set_misses(run, -1, missed)
    if progress:
        progress(1.0)
    ttft = fleet.ttft_quantiles((0.5, 0.95, 0.99))
    return run.result(fleet.arrived_total, fleet.slo_attainment, ttft, parameters)


def _set_misses(run: _Run, index: int, missed: float) -> None:
    row = run.rows[index]
    run.rows[index] = DecisionRow(row.time_s, row.desired_replicas, row.ready_replicas,
                                  row.desired_nodes, row.ready_nodes, row.demand, row.forecast,
                                  missed)


def _replay_requests(trace: RequestTrace, run: _Run, profile: ReplicaProfile,
                     parameters: dict[str, object], progress: Progress | None) -> ReplayResult:
    s = run.settings
    fleet = RequestFleet(profile, tick_s=s.request_tick_s)
    end = trace.duration_s + s.drain_s
    step = 1.0
    per_decision = max(1, round(s.decision_interval_s / step))
    ready: list[str] = []
    arrivals_at = np.searchsorted(trace.arrival_s, np.arange(0.0, end + step, step))
    t = 0.0
    i = 0
    while t < end:
        lo, hi = int(arrivals_at[i]), int(arrivals_at[i + 1])
        if i % per_decision == 0:
            first = int(arrivals_at[max(0, i - per_decision)])
            count = lo - first
            rate = count / s.decision_interval_s
            prompt = float(trace.prompt_tokens[first:lo].mean()) if count else 0.0
            output = float(trace.output_tokens[first:lo].mean()) if count else 0.0
            run.decide(t, fleet_pages(fleet), rate, prompt, output)
            if progress and i % (per_decision * 20) == 0:
                progress(t / end)
        run.cluster.advance(t, step)
        now_ready = run.cluster.ready_ids(t)
        if now_ready != ready:
            fleet.set_replicas(now_ready)
            ready = now_ready
        fleet.advance(t + step, trace.arrival_s[lo:hi], trace.prompt_tokens[lo:hi],
                      trace.output_tokens[lo:hi])
        t += step
        i += 1
    if progress:
        progress(1.0)
    results = fleet.results()
    ttft = np.where(np.isnan(results.ttft_s), np.inf, results.ttft_s)
    met = ttft <= s.slo_ttft_s
    requests = len(ttft) + fleet.rejected
    slo = float(met.sum()) / requests if requests else 1.0
    _misses_per_row(run, results.arrival_s, ~met)
    quantiles = np.quantile(ttft, (0.5, 0.95, 0.99)) if len(ttft) else np.full(3, np.nan)
    return run.result(float(requests), slo, quantiles, parameters)


def _misses_per_row(run: _Run, arrival_s: npt.NDArray[np.float64],
                    missed: npt.NDArray[np.bool_]) -> None:
    if not run.rows:
        return
    times = np.array([r.time_s for r in run.rows])
    index = np.clip(np.searchsorted(times, arrival_s, side="right") - 1, 0, len(times) - 1)
    per_row = np.bincount(index[missed], minlength=len(times))
    for k, count in enumerate(per_row):
        if count:
            _set_misses(run, k, float(count))
