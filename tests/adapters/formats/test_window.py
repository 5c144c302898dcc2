"""PodWindow: rates, resets, histogram quantiles (Prometheus rules) and means, by hand."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import pytest

from adapters.formats.vllm import HistogramSnapshot, VllmSnapshot, read_vllm
from adapters.formats.window import PodWindow, histogram_quantile, merged_quantile
from scaler.sim.emulation.engine_state import EngineState
from scaler.sim.emulation.vllm_metrics import render_page

INF = math.inf
BOUNDS = (0.1, 0.5, 1.0, INF)


def snap(counters: dict[str, float] | None = None,
         hist: HistogramSnapshot | None = None) -> VllmSnapshot:
    return VllmSnapshot(waiting=0.0, running=0.0, kv_cache_usage=None,
                        counters=counters or {},
                        histograms={"ttft": hist} if hist is not None else {},
                        model_names=frozenset(), bad_lines=0)


def hist(cumulative: tuple[float, ...], total: float, bounds: tuple[float, ...] = BOUNDS,
         count: float | None = None) -> HistogramSnapshot:
    return HistogramSnapshot(bounds, cumulative, total, cumulative[-1] if count is None else count)


def test_rate_needs_two_samples() -> None:
    window = PodWindow(60.0)
    assert window.rate("prompt_tokens") is None
    window.add(0.0, snap({"prompt_tokens": 100.0}))
    assert window.rate("prompt_tokens") is None
    window.add(10.0, snap({"prompt_tokens": 150.0}))
    assert window.rate("prompt_tokens") == 5.0
    assert window.rate("generation_tokens") is None


def test_rate_hand_computed_over_steps() -> None:
    window = PodWindow(60.0)
    for t, value in [(0.0, 0.0), (5.0, 20.0), (15.0, 50.0), (20.0, 50.0)]:
        window.add(t, snap({"c": value}))
    assert window.rate("c") == pytest.approx(50.0 / 20.0)
    assert window.span_s == 20.0
    assert len(window) == 4


def test_counter_reset_counts_the_new_value() -> None:
    window = PodWindow(60.0)
    for t, value in [(0.0, 100.0), (10.0, 130.0), (20.0, 12.0), (30.0, 40.0)]:
        window.add(t, snap({"c": value}))
    # 30 + 12 (restarted: the increase is the new value) + 28
    assert window.rate("c") == pytest.approx(70.0 / 30.0)


def test_steps_missing_the_counter_are_skipped() -> None:
    window = PodWindow(60.0)
    window.add(0.0, snap({"c": 10.0}))
    window.add(10.0, snap({}))
    window.add(20.0, snap({"c": 30.0}))
    window.add(25.0, snap({"c": 40.0}))
    assert window.rate("c") == pytest.approx(10.0 / 5.0)


def test_old_samples_dropped_but_two_kept() -> None:
    window = PodWindow(30.0)
    for t in range(0, 100, 10):
        window.add(float(t), snap({"c": float(t) * 2}))
    assert len(window) == 4  # 60, 70, 80, 90: nothing older than 90 - 30
    assert window.span_s == 30.0
    window.add(500.0, snap({"c": 1000.0}))
    assert len(window) == 2  # the gap leaves only 90 and 500, still a rate
    assert window.rate("c") == pytest.approx((1000.0 - 180.0) / 410.0)
    assert window.latest == snap({"c": 1000.0})


def test_add_requires_monotonic_time_and_same_time_replaces() -> None:
    window = PodWindow()
    window.add(0.0, snap({"c": 0.0}))
    window.add(5.0, snap({"c": 10.0}))
    window.add(5.0, snap({"c": 20.0}))
    assert len(window) == 2
    assert window.rate("c") == 4.0
    with pytest.raises(ValueError, match=r"t_s=4\.0 is before the previous snapshot's t_s=5\.0"):
        window.add(4.0, snap())
    with pytest.raises(ValueError, match="window_s must be > 0"):
        PodWindow(0.0)


def test_quantile_hand_computed() -> None:
    window = PodWindow(60.0)
    window.add(0.0, snap(hist=hist((1.0, 2.0, 2.0, 2.0), 1.0)))
    window.add(10.0, snap(hist=hist((5.0, 12.0, 18.0, 20.0), 20.0)))
    # increase per bucket: <=0.1: 4, <=0.5: 10, <=1.0: 16, +Inf: 18 observations
    # q=0.5 -> rank 9, in (0.1, 0.5]: 0.1 + 0.4 * (9 - 4) / (10 - 4)
    assert window.quantile("ttft", 0.5) == pytest.approx(0.1 + 0.4 * 5.0 / 6.0)
    # q=0.2 -> rank 3.6, first bucket starts at 0: 0.1 * 3.6 / 4
    assert window.quantile("ttft", 0.2) == pytest.approx(0.09)
    # q=0.85 -> rank 15.3 in (0.5, 1.0]: 0.5 + 0.5 * (15.3 - 10) / 6
    assert window.quantile("ttft", 0.85) == pytest.approx(0.5 + 0.5 * 5.3 / 6.0)
    # q=0.95 -> rank 17.1 falls in +Inf: the highest finite bound
    assert window.quantile("ttft", 0.95) == 1.0
    assert window.quantile("ttft", 1.0) == 1.0
    assert window.mean("ttft") == pytest.approx(19.0 / 18.0)


def test_quantile_rules_match_prometheus() -> None:
    # Values from Prometheus' histogram_quantile semantics, computed by hand.
    assert histogram_quantile(0.5, (1.0, 2.0, INF), (0.0, 10.0, 10.0)) == 1.5
    assert histogram_quantile(0.0, (1.0, 2.0, INF), (0.0, 10.0, 10.0)) == 0.0
    assert histogram_quantile(0.5, (-1.0, 0.0, INF), (4.0, 6.0, 8.0)) == -1.0
    assert histogram_quantile(0.9, (-1.0, 0.0, INF), (4.0, 6.0, 8.0)) == 0.0
    assert histogram_quantile(0.5, (INF,), (5.0,)) is None
    assert histogram_quantile(0.5, (1.0, INF), (0.0, 0.0)) is None
    # non-monotonic buckets are made monotonic first
    assert histogram_quantile(0.5, (1.0, 2.0, 3.0, INF), (4.0, 2.0, 8.0, 8.0)) == 1.0
    # without a +Inf bucket (a cut page) interpolation stays within the last bucket
    assert histogram_quantile(1.0, (1.0, 2.0), (2.0, 4.0)) == 2.0
    with pytest.raises(ValueError, match=r"q must be within \[0, 1\], got 1.5"):
        histogram_quantile(1.5, (1.0, INF), (1.0, 1.0))


def test_quantile_counts_only_the_window_and_handles_resets() -> None:
    window = PodWindow(60.0)
    window.add(0.0, snap(hist=hist((100.0, 100.0, 100.0, 100.0), 5.0)))
    window.add(10.0, snap(hist=hist((100.0, 104.0, 104.0, 104.0), 6.0)))  # +4 in (0.1, 0.5]
    window.add(20.0, snap(hist=hist((0.0, 0.0, 4.0, 4.0), 3.0)))  # restart: +4 in (0.5, 1]
    assert window.quantile("ttft", 0.25) == pytest.approx(0.1 + 0.4 * 2.0 / 4.0)
    assert window.quantile("ttft", 0.75) == pytest.approx(0.5 + 0.5 * 2.0 / 4.0)
    assert window.mean("ttft") == pytest.approx((1.0 + 3.0) / 8.0)


def test_empty_window_gives_none() -> None:
    window = PodWindow(60.0)
    assert window.quantile("ttft", 0.5) is None
    window.add(0.0, snap(hist=hist((1.0, 2.0, 2.0, 2.0), 1.0)))
    assert window.quantile("ttft", 0.5) is None
    window.add(10.0, snap(hist=hist((1.0, 2.0, 2.0, 2.0), 1.0)))
    assert window.quantile("ttft", 0.5) is None
    assert window.mean("ttft") is None
    assert window.quantile("itl", 0.5) is None
    with pytest.raises(ValueError, match="q must be within"):
        window.quantile("ttft", -0.1)


def test_bounds_change_uses_only_steps_with_the_latest_bounds() -> None:
    window = PodWindow(60.0)
    window.add(0.0, snap(hist=hist((5.0, 5.0), 1.0, bounds=(1.0, INF))))
    window.add(10.0, snap(hist=hist((0.0, 2.0, 2.0, 2.0), 0.6)))  # new bounds: reset
    window.add(20.0, snap(hist=hist((0.0, 4.0, 4.0, 4.0), 1.2)))
    assert window.quantile("ttft", 0.5) == pytest.approx(0.1 + 0.4 * 0.5)
    assert window.mean("ttft") == pytest.approx(1.2 / 4.0)


def test_end_to_end_with_rendered_pages() -> None:
    engine = EngineState()
    window = PodWindow(60.0)
    window.add(0.0, read_vllm(render_page([engine])))
    for _ in range(10):
        engine.record_step(200, 50)
        engine.record_request(prompt_tokens=200, generation_tokens=51, queue_s=0.1,
                              ttft_s=0.3, e2e_s=2.3)
    window.add(4.0, read_vllm(render_page([engine])))
    assert window.rate("prompt_tokens") == 500.0
    assert window.rate("generation_tokens") == 125.0
    assert window.rate("request_success") == 2.5
    assert window.mean("ttft") == pytest.approx(0.3)
    assert window.mean("itl") == pytest.approx(2.0 / 50.0)
    # all ten TTFTs in (0.25, 0.5]: the median interpolates to the middle of that bucket
    assert window.quantile("ttft", 0.5) == pytest.approx(0.375)


PROMTOOL_SERIES = {  # cumulative bucket counts at 0, 1, 2, 3, 4 min; the pod restarts at 3 min
    "0.5": (10.0, 13.0, 15.0, 1.0, 2.0),
    "1": (20.0, 27.0, 31.0, 3.0, 6.0),
    "2": (25.0, 35.0, 41.0, 5.0, 9.0),
    "+Inf": (26.0, 37.0, 44.0, 5.0, 10.0),
}
QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 1.0)


def _promtool_test_file(expected: dict[float, float]) -> str:
    lines = ["rule_files: [rules.yml]", "evaluation_interval: 1m", "tests:",
             "  - interval: 1m", "    input_series:"]
    for le, values in PROMTOOL_SERIES.items():
        lines += [f"      - series: 'h_bucket{{le=\"{le}\"}}'",
                  f"        values: '{' '.join(str(int(v)) for v in values)}'"]
    lines.append("    promql_expr_test:")
    for q, value in expected.items():
        lines += [f"      - expr: histogram_quantile({q}, increase(h_bucket[4m]))",
                  "        eval_time: 4m", "        exp_samples:",
                  f"          - labels: '{{}}'\n            value: {value!r}"]
    return "\n".join(lines) + "\n"


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (apt-get install prometheus)")
def test_quantiles_equal_real_prometheus(tmp_path: Path) -> None:
    """promtool evaluates histogram_quantile over increase() on the same series.

    increase() over a window that the samples cover exactly does not extrapolate, and
    Prometheus adds back the pre-reset value per bucket, so both sides see the same integer
    increases and must give bit-identical quantiles.
    """
    window = PodWindow(240.0)
    bounds = (0.5, 1.0, 2.0, INF)
    for step in range(5):
        cumulative = tuple(values[step] for values in PROMTOOL_SERIES.values())
        window.add(60.0 * step, snap(hist=hist(cumulative, 1.0, bounds=bounds)))
    expected = {}
    for q in QUANTILES:
        value = window.quantile("ttft", q)
        assert value is not None
        expected[q] = value
    assert expected[0.95] == 2.0  # rank in +Inf: highest finite bound
    (tmp_path / "rules.yml").write_text("groups: []\n")
    (tmp_path / "test.yml").write_text(_promtool_test_file(expected))
    result = subprocess.run(["promtool", "test", "rules", "test.yml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_merged_quantile_sums_bucket_increases_across_pods() -> None:
    fast, slow, other_bounds = PodWindow(60.0), PodWindow(60.0), PodWindow(60.0)
    fast.add(0.0, snap(hist=hist((0.0, 0.0, 0.0, 0.0), 0.0)))
    fast.add(10.0, snap(hist=hist((8.0, 8.0, 8.0, 8.0), 0.4)))  # 8 requests <= 0.1 s
    slow.add(0.0, snap(hist=hist((0.0, 0.0, 0.0, 0.0), 0.0)))
    slow.add(10.0, snap(hist=hist((0.0, 0.0, 2.0, 2.0), 1.6)))  # 2 requests in (0.5, 1]
    other_bounds.add(0.0, snap(hist=hist((0.0, 0.0), 0.0, bounds=(5.0, INF))))
    other_bounds.add(10.0, snap(hist=hist((0.0, 9.0), 90.0, bounds=(5.0, INF))))
    # Merged: 10 requests; q=0.9 -> rank 9 in (0.5, 1.0] holding ranks 9-10: 0.5 + 0.5 * 1/2.
    merged = merged_quantile([fast, slow, other_bounds], "ttft", 0.9)
    assert merged == pytest.approx(0.75)
    assert fast.quantile("ttft", 0.9) == pytest.approx(0.1 * 7.2 / 8)  # each pod alone differs
    assert merged_quantile([PodWindow(60.0)], "ttft", 0.9) is None
