"""The workload state between scrapes and RPCs: registration, metadata updates, pages and
failures, idle expiry. Plain data on a hand-moved time: no service, no pod, no event loop."""

from __future__ import annotations

import subprocess
import sys

from adapters.formats.vllm import VllmSnapshot
from scaler.keda.metadata import parse_metadata
from scaler.model.specs import Endpoint
from scaler.service.workloads import Workload, WorkloadKey, WorkloadRegistry

A, B = "http://a:8000/metrics", "http://b:8000/metrics"
KEY = WorkloadKey("ns", "so", "desired-replicas")


def spec(*urls: str, **extra: str):  # type: ignore[no-untyped-def]
    return parse_metadata({"endpoints": ",".join(urls), **extra})


def page(waiting: float = 0.0, *, done: float = 0.0, bad_lines: int = 0) -> VllmSnapshot:
    return VllmSnapshot(waiting, 1.0, 0.1, {"request_success": done}, {}, frozenset(),
                        bad_lines)


def registry() -> WorkloadRegistry:
    return WorkloadRegistry(idle_timeout_s=600.0, rate_window_s=60.0)


def test_the_first_touch_registers_and_later_ones_count_as_asked() -> None:
    workloads = registry()
    workload, is_new, changed = workloads.touch(KEY, spec(A), 100.0)
    assert (is_new, changed) == (True, True)
    assert (workload.registered_s, workload.last_asked_s, workload.rate_window_s) == (
        100.0, 100.0, 60.0)
    assert list(workload.pods) == [A]
    again, is_new, changed = workloads.touch(KEY, spec(A), 130.0)
    assert again is workload and (is_new, changed) == (False, False)
    assert (workload.registered_s, workload.last_asked_s) == (100.0, 130.0)
    assert workloads.get(KEY) is workload and len(workloads) == 1
    assert list(workloads) == [workload]


def test_a_metadata_change_keeps_the_history_of_pods_that_stay() -> None:
    workload = Workload(KEY, spec(A, B), 0.0, 0.0, 60.0)
    workload.record_page(A, 10.0, page(done=5))
    kept = workload.pods[A]
    assert workload.update_spec(spec(A, "http://c:8000/metrics")) is True
    assert workload.pods[A] is kept and kept.window.newest_s == 10.0
    assert B not in workload.pods and "http://c:8000/metrics" in workload.pods
    assert workload.update_spec(spec(A, "http://c:8000/metrics")) is False  # same metadata


def test_other_metadata_never_costs_a_discovered_workload_its_pods() -> None:
    workload = Workload(KEY, spec(A), 0.0, 0.0, 60.0)
    workload.set_endpoints([Endpoint("found", B)])  # what discovery found ready
    found = workload.pods[B]
    assert workload.update_spec(spec(A, headroom="1.3")) is True
    assert workload.pods == {B: found}  # endpoints unchanged: the pods are left alone


def test_set_endpoints_renames_a_pod_without_losing_its_window() -> None:
    workload = Workload(KEY, spec(A), 0.0, 0.0, 60.0)
    workload.record_page(A, 10.0, page())
    state = workload.pods[A]
    workload.set_endpoints([Endpoint("renamed", A)])
    assert workload.pods[A] is state and state.endpoint.pod == "renamed"


def test_a_page_clears_the_problem_a_failure_set_and_says_so_once() -> None:
    workload = Workload(KEY, spec(A), 0.0, 0.0, 60.0)
    assert workload.record_failure(A, "timeout") is True
    assert workload.record_failure(A, "timeout") is False  # the same problem: no new log
    assert workload.record_failure(A, "refused") is True
    assert workload.problems() == ["refused"]
    assert workload.freshest_s() is None
    cleared = workload.record_page(A, 20.0, page(3, bad_lines=2))
    assert cleared == "refused"
    pod = workload.pods[A]
    assert (pod.problem, pod.last_ok_s, pod.bad_lines) == (None, 20.0, 2)
    assert pod.snapshot is not None and pod.snapshot.waiting == 3
    assert workload.record_page(A, 25.0, page()) is None
    assert workload.freshest_s() == 25.0 and workload.problems() == []
    assert pod.is_fresh(40.0, 15.0) and not pod.is_fresh(40.1, 15.0)


def test_a_sample_not_newer_than_the_window_only_refreshes_the_pod() -> None:
    """Prometheus' sample time: rates are taken between sample times, not read times."""
    workload = Workload(KEY, spec(A), 0.0, 0.0, 60.0)
    workload.record_page(A, 10.0, page(done=0), sampled_s=8.0)
    workload.record_page(A, 15.0, page(done=10), sampled_s=8.0)  # Prometheus has nothing new
    pod = workload.pods[A]
    assert (pod.last_ok_s, len(pod.window), pod.window.newest_s) == (15.0, 1, 8.0)
    workload.record_page(A, 20.0, page(done=10), sampled_s=13.0)
    assert pod.window.rate("request_success") == 2.0  # 10 over the 5 s between samples


def test_each_new_page_extends_or_ends_the_pods_queue_streak() -> None:
    """Saturation needs a queue held over 3 scrapes: a repeated sample is not a scrape, a
    failed scrape proves nothing, an empty queue or a gap over the rate window ends it."""
    workload = Workload(KEY, spec(A), 0.0, 0.0, 60.0)
    pod = workload.pods[A]
    workload.record_page(A, 10.0, page(4), sampled_s=8.0)
    workload.record_page(A, 15.0, page(4), sampled_s=8.0)  # Prometheus has nothing new
    assert (pod.queue.pages, pod.queue.since_s) == (1, 8.0)
    workload.record_failure(A, "timeout")
    workload.record_page(A, 20.0, page(4), sampled_s=13.0)
    workload.record_page(A, 25.0, page(4), sampled_s=18.0)
    assert pod.queue.holds()
    workload.record_page(A, 30.0, page(0), sampled_s=18.0)  # the same sample, now empty
    assert pod.queue.pages == 0
    for t_s in (40.0, 45.0, 200.0):  # unseen for 155 s in between
        workload.record_page(A, t_s, page(4))
    assert (pod.queue.pages, pod.queue.since_s) == (1, 200.0)


def test_replicas_are_the_static_pods_with_those_never_read_starting() -> None:
    workload = Workload(KEY, spec(A, B), 0.0, 0.0, 60.0)
    assert workload.replica_counts() == (2, 2, 0)
    workload.record_page(A, 10.0, page())
    assert workload.replica_counts() == (2, 1, 0)


def test_a_workload_is_idle_once_kept_unasked_past_the_timeout_then_removed() -> None:
    workloads = registry()
    workload, _, _ = workloads.touch(KEY, spec(A), 0.0)
    assert not workloads.is_idle(workload, 600.0)
    workloads.touch(KEY, spec(A), 500.0)
    assert not workloads.is_idle(workload, 1100.0)
    assert workloads.is_idle(workload, 1100.1)
    workloads.remove(KEY)
    workloads.remove(KEY)  # twice is fine: a drop may race a stop
    assert workloads.get(KEY) is None and len(workloads) == 0


def test_the_state_module_loads_no_event_loop_nor_network_client() -> None:
    """Plain data: importing it must not pull asyncio, aiohttp or the Kubernetes client in."""
    code = ("import sys, scaler.service.workloads; "
            "print(sorted(m for m in ('aiohttp', 'kubernetes_asyncio', 'asyncio') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
