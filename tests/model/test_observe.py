"""What a fleet of pods shows: health, the reactive observation, the planner's view, and the
last word for a workload that cannot be seen at zero. Pods are built by hand (plain data)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import pytest

from adapters.formats.dcgm import GpuLoad
from adapters.formats.vllm import VllmSnapshot
from adapters.formats.window import PodWindow
from scaler.keda.metadata import parse_metadata
from scaler.model import observe
from scaler.model.predictive import Plan
from scaler.model.reactive import Decision
from scaler.model.saturation import QueueStreak
from scaler.model.specs import Endpoint

SPEC = parse_metadata({"endpoints": "http://pod:8000/metrics", "maxReplicas": "20"})
NOW = 1000.0


def page(waiting: float = 0, running: float = 0, *, done: float = 0.0, prompt: float = 0.0,
         output: float = 0.0, kv: float = 0.5) -> VllmSnapshot:
    counters = {"request_success": done, "prompt_tokens": prompt, "generation_tokens": output}
    return VllmSnapshot(waiting, running, kv, counters, {}, frozenset(), 0)


@dataclass
class Pod:
    endpoint: Endpoint
    window: PodWindow = field(default_factory=PodWindow)
    snapshot: VllmSnapshot | None = None
    last_ok_s: float | None = None
    unhealthy: bool = False
    queue: QueueStreak = field(default_factory=QueueStreak)
    taught_s: float | None = None

    def is_fresh(self, now_s: float, stale_after_s: float) -> bool:
        return self.last_ok_s is not None and now_s - self.last_ok_s <= stale_after_s

    def read(self, t_s: float, snapshot: VllmSnapshot) -> Pod:
        self.window.add(t_s, snapshot)
        self.snapshot, self.last_ok_s = snapshot, t_s
        self.queue = self.queue.after(t_s, snapshot.waiting)
        return self


@dataclass
class Fleet:
    pods: dict[str, Pod]
    gpu_by_pod: dict[str, GpuLoad] = field(default_factory=dict)
    rate_window_s: float = 60.0
    plan: Plan | None = None
    counts: tuple[int, int, int] | None = None

    def replica_counts(self) -> tuple[int, int, int]:
        return self.counts or (len(self.pods), 0, 0)


def pod(name: str, *pages: VllmSnapshot, every_s: float = 30.0, last_s: float = NOW) -> Pod:
    """A pod that read ``pages`` ``every_s`` apart, the last one at ``last_s``."""
    p = Pod(Endpoint(name, f"http://{name}:8000/metrics"))
    for i, snapshot in enumerate(pages):
        p.read(last_s - (len(pages) - 1 - i) * every_s, snapshot)
    return p


def fleet(*pods: Pod, **kwargs: object) -> Fleet:
    return Fleet({p.endpoint.url: p for p in pods}, **kwargs)  # type: ignore[arg-type]


def gpu(engine_active: float | None = None, util_pct: float | None = None) -> GpuLoad:
    return GpuLoad(1, util_pct, engine_active, 0.0, 0.0)


def test_the_gpu_is_busy_by_engine_activity_else_utilisation() -> None:
    assert observe.gpu_busy(gpu(engine_active=0.6, util_pct=10)) is True
    assert observe.gpu_busy(gpu(engine_active=0.2, util_pct=90)) is False
    assert observe.gpu_busy(gpu(util_pct=50)) is True
    assert observe.gpu_busy(gpu()) is None
    assert observe.gpu_busy(None) is None


def test_a_pods_gpus_are_found_by_its_name_or_as_the_only_pods_node_page() -> None:
    a, b = pod("a"), pod("b")
    named = fleet(a, b, gpu_by_pod={"a": gpu(1.0)})
    assert observe.gpu_of(named, a) == gpu(1.0)
    assert observe.gpu_of(named, b) is None
    bare_metal = fleet(a, gpu_by_pod={"http://node:9400/metrics": gpu(0.0)})
    assert observe.gpu_of(bare_metal, a) == gpu(0.0)


def served(*queues: float, per_page: float = 30.0, kv: float = 0.5) -> tuple[VllmSnapshot, ...]:
    """Pages with these queues, ``per_page`` requests completed between two of them."""
    return tuple(page(q, 10, done=i * per_page, kv=kv) for i, q in enumerate(queues))


@pytest.mark.parametrize(("pages", "gpu_load", "health"), [
    ((page(4), page(4)), gpu(1.0), "warming"),  # 30 s of window out of 60: too short yet
    ((page(0, 10), page(5, 10), page(9, 10)), gpu(0.0), "unhealthy"),  # growing, GPU idle
    (served(3, 5, 9), gpu(1.0), "saturated"),  # queue held 3 pages, completing, GPU busy
    (served(3, 5, 9), None, "saturated"),  # the same without GPU data
    (served(9, 9, 9), gpu(0.0), "ok"),  # an idle GPU: whatever the queue, not at capacity
    (served(0, 5, 9), None, "ok"),  # a queue on two pages only: a burst so far
    (served(0, 0, 4, kv=0.95), None, "saturated"),  # waiting on a full KV cache
    (served(0, 0, 4, per_page=0.0, kv=0.95), None, "ok"),  # nothing completes: no throughput
    ((page(0, 10), page(5, 10), page(9, 10)), None, "ok"),  # queue since 30 s, none done
    ((page(3, 10), page(5, 10), page(9, 10)), None, "unhealthy"),  # a window: stuck
    ((page(3, 10), page(5, 10), page(9, 10)), gpu(1.0), "ok"),  # busy: long requests
    (served(9, 5, 4), gpu(0.0), "ok"),  # a draining queue
    ((page(0, 10), page(0, 10), page(0, 10)), gpu(1.0), "ok"),  # no queue
])
def test_pod_health(pages, gpu_load, health) -> None:
    p = pod("a", *pages)
    assert observe.pod_health(fleet(p, gpu_by_pod={"a": gpu_load} if gpu_load else {}),
                              p) == health


def test_saturation_needs_no_full_window() -> None:
    """Three pages 5 s apart (10 s) with a queue and completions: at capacity at once."""
    p = pod("a", *served(4, 4, 4, per_page=20), every_s=5)
    assert observe.pod_health(fleet(p), p) == "saturated"
    short = pod("b", *served(4, 4, 4, per_page=20), every_s=4)  # 8 s: not yet
    assert observe.pod_health(fleet(short), short) == "warming"


def test_only_fresh_pods_are_checked() -> None:
    fresh, stale = pod("a", *served(3, 5, 9)), pod("b", *served(3, 5, 9), last_s=NOW - 20)
    health = observe.check_health(fleet(fresh, stale, gpu_by_pod={"a": gpu(1.0)}), NOW, 15.0)
    assert health == {fresh.endpoint.url: "saturated"}


class Capacity:
    def __init__(self) -> None:
        self.seen: list[tuple[float, float, float]] = []

    def observe_saturated(self, served: float, prompt: float, output: float) -> None:
        self.seen.append((served, prompt, output))


def test_saturated_pods_teach_the_capacity_model_their_throughput() -> None:
    capacity = Capacity()
    busy = pod("a", page(5, done=0, prompt=0, output=0),
               page(5, done=60, prompt=60_000, output=12_000), every_s=60)
    idle = pod("b", page(), page(), every_s=60)  # served nothing: nothing to learn
    taught = observe.learn_capacity(capacity, [busy, idle],  # type: ignore[arg-type]
                                    rate_window_s=60.0)
    assert capacity.seen == [(1.0, 1000.0, 200.0)]
    assert taught == [busy]


def test_a_pod_teaches_once_per_rate_window_and_only_from_a_full_saturated_one() -> None:
    """Windows that overlap share their noise: one noisy scrape must be one sample; and only
    a window the queue stayed non-empty through was served at capacity."""
    capacity = Capacity()
    p = pod("a", *served(5, 5, 5), every_s=30)
    learn = observe.learn_capacity
    assert learn(capacity, [p], rate_window_s=60.0) == [p]  # type: ignore[arg-type]
    p.taught_s = NOW
    p.read(NOW + 30, page(5, 10, done=90))
    assert learn(capacity, [p], rate_window_s=60.0) == []  # type: ignore[arg-type]
    p.read(NOW + 60, page(5, 10, done=120))  # the window is now NOW..NOW + 60
    assert learn(capacity, [p], rate_window_s=60.0) == [p]  # type: ignore[arg-type]
    young = pod("b", *served(5, 5, 5), every_s=15)  # 30 s of a 60 s window
    assert learn(capacity, [young], rate_window_s=60.0) == []  # type: ignore[arg-type]
    late = pod("c", *served(0, 5, 5), every_s=30)  # queued for the last 30 s only
    assert learn(capacity, [late], rate_window_s=60.0) == []  # type: ignore[arg-type]
    assert len(capacity.seen) == 2


def test_an_unhealthy_or_stale_pod_is_missing_from_the_observation() -> None:
    ok = pod("a", page(3, 7))
    sick = pod("b", page(20, 1))
    sick.unhealthy = True
    stale = pod("c", page(1, 1), last_s=NOW - 20)
    seen = observe.observation(fleet(ok, sick, stale), NOW, 15.0)
    assert [None if load is None else load.waiting for load in seen.pods.values()] == [
        3, None, None]
    assert seen.unhealthy_pods == 1  # known stuck, not missing


def test_arrivals_are_completions_plus_growth_scaled_up_for_pods_without_data() -> None:
    a = pod("a", page(0, 10, done=0, prompt=0, output=0),
            page(2, 18, done=60, prompt=30_000, output=6_000), every_s=60)
    stale = pod("b", page(1, 1), last_s=NOW - 20)
    planned = Plan(replicas=2, nodes=3, active=True, need_now=2, need_ahead=2,
                   forecast_mean=0.0, forecast_upper=0.0, reason="test")
    state = observe.fleet_state(fleet(a, stale, plan=planned, counts=(2, 0, 0)), NOW, 15.0)
    # 1 req/s done + 10 more in flight over 60 s, times 2 pods listed for 1 seen.
    assert state.observed_rate == pytest.approx(2 * (1.0 + 10 / 60))
    assert (state.backlog, state.running) == (2, 18)
    assert (state.mean_prompt_tokens, state.mean_output_tokens) == (500.0, 100.0)
    assert (state.nodes, state.ready_nodes, state.replicas) == (3, 3, 2)


def test_without_a_fresh_pod_demand_is_zero_at_zero_and_unknown_while_starting() -> None:
    assert observe.fleet_state(fleet(counts=(0, 0, 0)), NOW, 15.0).observed_rate == 0.0
    starting = observe.fleet_state(fleet(counts=(1, 1, 1)), NOW, 15.0)
    assert math.isnan(starting.observed_rate)
    assert (starting.starting_replicas, starting.pending_replicas, starting.nodes) == (1, 1, 0)


def test_a_workload_seen_only_while_serving_is_never_sent_to_zero() -> None:
    selector = dataclasses.replace(SPEC, endpoints=(), prometheus_selector='app="llama"')
    assert observe.seen_only_while_serving(selector, discovered=False)
    assert not observe.seen_only_while_serving(selector, discovered=True)
    assert not observe.seen_only_while_serving(SPEC, discovered=False)
    kept = observe.never_zero(Decision(0, False, "0 -> 0: idle", (), desired_nodes=0), SPEC.nodes)
    assert (kept.desired_replicas, kept.active, kept.desired_nodes) == (1, True, 1)
    assert kept.reason.startswith("0 -> 0: idle; kept at >= 1 and active")
    serving = Decision(2, True, "2 -> 2", ())
    assert observe.never_zero(serving, SPEC.nodes) is serving


@pytest.mark.parametrize(("pods", "outage", "discovery", "selector", "says"), [
    ([], "timeout", "403", "x", ": cannot read Prometheus (timeout)"),
    ([Pod(Endpoint("a", "u"), unhealthy=True)], None, "403", None,
     " (1 unhealthy: queue grows while the GPU idles, or nothing completes; check the engine "
     "and GPU)"),
    ([Pod(Endpoint("a", "u"))], None, "403", None, ""),
    ([], None, "403", "x", ": pod discovery is failing (403)"),
    ([], None, None, 'app="x"',
     ": Prometheus has no series for prometheusSelector 'app=\"x\"'; check it matches the "
     "vLLM pods' labels"),
    ([], None, None, None, ""),
])
def test_why_there_is_no_data(pods, outage, discovery, selector, says) -> None:
    assert observe.why_no_data(pods, prometheus_outage=outage, discovery_error=discovery,
                               prometheus_selector=selector) == says
