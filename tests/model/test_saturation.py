"""When a pod is at capacity, when it is stuck, and the floor a saturated fleet sets."""

from __future__ import annotations

import math

import pytest

from scaler.model.saturation import QueueStreak, at_capacity, stalled, throughput_floor


def streak(*pages: tuple[float, float]) -> QueueStreak:
    """The streak after pages of (time, waiting)."""
    s = QueueStreak()
    for t_s, waiting in pages:
        s = s.after(t_s, waiting)
    return s


def test_a_queue_streak_counts_pages_in_a_row_with_requests_waiting():
    held = streak((0, 3), (5, 1), (10, 7))
    assert (held.pages, held.span_s, held.holds()) == (3, 10.0, True)
    assert not streak((0, 3), (10, 3)).holds()  # two pages: a burst so far
    assert not streak((0, 3), (4, 3), (8, 3)).holds()  # three pages, 8 s
    broken = streak((0, 3), (5, 3), (10, 0), (15, 3), (20, 3))
    assert (broken.pages, broken.span_s, broken.holds()) == (2, 5.0, False)
    assert QueueStreak().span_s == 0.0
    assert not streak((0, math.nan), (5, math.nan), (10, math.nan)).holds()  # unreadable


HELD = streak((0, 5), (5, 5), (10, 5))


@pytest.mark.parametrize(("kwargs", "full"), [
    ({}, True),  # queue held, requests completing: no GPU data needed
    ({"gpu_busy": True}, True),
    ({"gpu_busy": False}, False),  # an idle GPU is not a full replica
    ({"streak": streak((0, 5), (10, 5))}, False),  # two pages: maybe a burst
    ({"streak": streak((10, 5)), "kv_cache_usage": 0.9}, True),  # waiting on a full KV cache
    ({"streak": streak((10, 5)), "kv_cache_usage": 0.89}, False),
    ({"streak": streak((10, 5)), "kv_cache_usage": None}, False),
    ({"served": 0.0}, False),  # nothing completes: no throughput to learn (a stall?)
    ({"served": None}, False),  # completions unknown
    ({"waiting": 0}, False),
    ({"measured_s": 9.0, "kv_cache_usage": 0.99}, False),  # a rate over under 10 s
])
def test_at_capacity(kwargs, full):
    args = {"waiting": 5, "kv_cache_usage": 0.5, "served": 3.0, "measured_s": 60.0,
            "gpu_busy": None, "streak": HELD, **kwargs}
    assert at_capacity(**args) is full


WINDOW = streak((0, 5), (30, 5), (55, 5))


@pytest.mark.parametrize(("kwargs", "stuck"), [
    ({}, True),  # queued a whole window, nothing finished, GPU not known busy
    ({"gpu_busy": False}, True),
    ({"gpu_busy": True}, False),  # busy: long requests may finish nothing for a minute
    ({"served": 0.5}, False),
    ({"served": None}, False),  # the counter is unknown: proves nothing
    ({"streak": streak((30, 5), (55, 5))}, False),  # queued half a window so far
    ({"streak": streak((30, 5), (55, 5)), "gpu_busy": False, "growing": True}, True),
    ({"waiting": 0, "gpu_busy": False, "growing": True}, False),
])
def test_stalled(kwargs, stuck):
    args = {"waiting": 5, "served": 0.0, "gpu_busy": None, "growing": False, "streak": WINDOW,
            "rate_window_s": 60.0, **kwargs}
    assert stalled(**args) is stuck


def test_the_throughput_floor_is_demand_over_what_a_saturated_pod_serves():
    # The fleet: 2 pods complete 5 req/s each, 10 req/s arrive, 80 wait (drained in
    # 60 s): 11.3 req/s at 5 per pod.
    assert throughput_floor(10 + 80 / 60, 2, 10.0) == 3
    assert throughput_floor(10.0, 2, 10.0) == 2  # exactly what they serve: no rounding up
    assert throughput_floor(10.0, 0, 0.0) == 0  # no saturated pod: no evidence
    assert throughput_floor(0.0, 2, 10.0) == 0
    assert throughput_floor(10.0, 2, 0.0) == 0
    assert throughput_floor(10.0, 1, 1e-320) == 0  # an absurd reading is no floor


def test_a_gap_longer_than_allowed_ends_a_streak():
    """A pod unseen for two hours (or a host that slept) was not held for two hours."""
    s = QueueStreak()
    for t_s in (0.0, 5.0, 10.0, 7210.0):
        s = s.after(t_s, 5, max_gap_s=60.0)
    assert (s.pages, s.since_s) == (1, 7210.0)
    for t_s in (7270.0, 7330.0):  # pages a rate window apart (Prometheus' own scrape)
        s = s.after(t_s, 5, max_gap_s=60.0)
    assert s.holds()
