"""read_vllm / read_page on rendered pages of every version and on the real fixtures."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from adapters.formats.promtext import PageError
from adapters.formats.vllm import VLLM_SAMPLE_NAMES, HistogramSnapshot, read_page, read_vllm
from scaler.sim.emulation.engine_state import EngineState
from scaler.sim.emulation.exposition import Histogram
from scaler.sim.emulation.vllm_metrics import render_page
from scaler.sim.emulation.vllm_versions import VLLM_VERSIONS

FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "metrics"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def _engine(idx: int, version: str) -> EngineState:
    engine = EngineState(running=2 + idx, waiting=3 * idx, kv_cache_usage=0.2 + 0.1 * idx,
                         prompt_tokens=1000.0 * (idx + 1), generation_tokens=500.0 + idx,
                         preemptions=idx, prefix_cache_queries=400.0 + idx,
                         prefix_cache_hits=100.0 + idx, bucket_version=version)
    engine.request_success["stop"] = 10.0 + idx
    engine.request_success["length"] = 1.0
    for k in range(4):
        engine.record_request(prompt_tokens=100, generation_tokens=30, queue_s=0.1 * k,
                              ttft_s=0.2 + 0.3 * k + idx, e2e_s=2.0 + k)
    return engine


def _summed(engines: list[EngineState], attr: str) -> Histogram:
    merged: Histogram = getattr(engines[0], attr)
    for engine in engines[1:]:
        merged = merged.merged(getattr(engine, attr))
    return merged


def _assert_histogram(snapshot: HistogramSnapshot, expected: Histogram) -> None:
    assert snapshot.bounds == (*expected.bounds, math.inf)
    assert snapshot.cumulative == expected.cumulative()
    assert snapshot.sum == pytest.approx(expected.sum)
    assert snapshot.count == expected.count


@pytest.mark.parametrize("version", VLLM_VERSIONS)
def test_rendered_page_sums_engines_and_averages_kv(version: str) -> None:
    engines = [_engine(i, version) for i in range(3)]
    snap = read_vllm(render_page(engines, version=version))
    assert snap.waiting == 0 + 3 + 6
    assert snap.running == 2 + 3 + 4
    assert snap.kv_cache_usage == pytest.approx(0.3)
    assert snap.model_names == {MODEL}
    assert snap.bad_lines == 0
    expected = {"prompt_tokens": 6000.0, "generation_tokens": 1503.0,
                "request_success": 3 * 11.0 + 3 + 3 * 4, "preemptions": 3.0,
                "prefix_cache_queries": 1203.0, "prefix_cache_hits": 303.0}
    if version == "0.6":  # V0: hit-rate gauges only, no prefix cache counters
        del expected["prefix_cache_queries"], expected["prefix_cache_hits"]
    if version == "0.7":  # early V1: no preemption counter yet
        del expected["preemptions"]
    assert dict(snap.counters) == expected
    assert set(snap.histograms) == {"ttft", "itl", "e2e", "queue_time"}
    _assert_histogram(snap.histograms["ttft"], _summed(engines, "ttft"))
    _assert_histogram(snap.histograms["itl"], _summed(engines, "itl"))
    _assert_histogram(snap.histograms["e2e"], _summed(engines, "e2e"))
    _assert_histogram(snap.histograms["queue_time"], _summed(engines, "queue_time"))


def test_bounds_come_from_the_page() -> None:
    old = read_vllm(render_page([_engine(0, "0.6")], version="0.6"))
    new = read_vllm(render_page([_engine(0, "0.12")], version="0.12"))
    assert old.histograms["ttft"].bounds[-2:] == (10.0, math.inf)
    assert new.histograms["ttft"].bounds[-2:] == (2560.0, math.inf)
    custom = EngineState()
    custom.ttft = Histogram([0.5, 1.5])
    custom.ttft.observe(1.0)
    snap = read_vllm(render_page([custom]))
    assert snap.histograms["ttft"] == HistogramSnapshot((0.5, 1.5, math.inf), (0.0, 1.0, 1.0),
                                                        1.0, 1.0)


def test_kv_cache_usage_perc_preferred_over_gpu_cache_usage_perc() -> None:
    text = render_page([_engine(0, "0.9.2"), _engine(1, "0.9.2")], version="0.9.2")
    assert "vllm:gpu_cache_usage_perc{" in text
    text = re.sub(r"^(vllm:gpu_cache_usage_perc\{.*\}) \S+$", r"\1 0.99", text, flags=re.M)
    assert read_vllm(text).kv_cache_usage == pytest.approx(0.25)


def test_prefix_cache_prefers_new_names_over_gpu_prefix() -> None:
    text = render_page([_engine(0, "0.9.2")], version="0.9.2")
    text = re.sub(r"^(vllm:gpu_prefix_cache_hits_total\{.*\}) \S+$", r"\1 7.0", text,
                  flags=re.M)
    assert read_vllm(text).counters["prefix_cache_hits"] == 100.0


def test_v0_fixture() -> None:
    snap = read_vllm((FIXTURES / "vllm_v0_0.6-era_aibrix-docs.txt").read_text())
    assert (snap.waiting, snap.running, snap.kv_cache_usage) == (0.0, 0.0, 0.0)
    assert dict(snap.counters) == {"prompt_tokens": 148.0, "generation_tokens": 955.0,
                                   "request_success": 4.0, "preemptions": 0.0}
    assert snap.histograms == {}
    assert snap.model_names == {"Qwen/Qwen2.5-Coder-1.5B-Instruct"}
    assert snap.bad_lines == 0


def test_v1_07_fixture() -> None:
    text = (FIXTURES / "vllm_v1_0.7-era_excerpt.txt").read_text()
    snap = read_vllm(text, model_name="Qwen/Qwen2.5-Coder-32B-Instruct")
    assert (snap.waiting, snap.running, snap.kv_cache_usage) == (0.0, 0.0, 0.0)
    assert dict(snap.counters) == {}
    assert snap.model_names == {"Qwen/Qwen2.5-Coder-32B-Instruct"}


def test_histogram_cut_before_inf_bucket_is_kept() -> None:
    engine = _engine(0, "0.6")
    lines = render_page([engine], version="0.6").splitlines()
    cut = next(i for i, line in enumerate(lines)
               if line.startswith('vllm:time_to_first_token_seconds_bucket{le="0.5"'))
    snap = read_vllm("\n".join(lines[: cut + 1]) + "\n")
    ttft = snap.histograms["ttft"]
    assert ttft.bounds == engine.ttft.bounds[: ttft.bounds.index(0.5) + 1]
    assert ttft.cumulative == engine.ttft.cumulative()[: len(ttft.bounds)]
    assert ttft.count == ttft.cumulative[-1]  # no _count on the page: last bucket
    assert ttft.sum == pytest.approx(engine.ttft.sum)  # V0 writes _sum before the buckets
    assert "e2e" not in snap.histograms


def test_missing_sum_reads_as_nan() -> None:
    text = ('vllm:num_requests_waiting 1\n'
            'vllm:e2e_request_latency_seconds_bucket{le="1.0"} 2\n'
            'vllm:e2e_request_latency_seconds_bucket{le="+Inf"} 3\n'
            'vllm:e2e_request_latency_seconds_bucket{le="soon"} 3\n')
    snap = read_vllm(text)
    e2e = snap.histograms["e2e"]
    assert (e2e.bounds, e2e.cumulative, e2e.count) == ((1.0, math.inf), (2.0, 3.0), 3.0)
    assert math.isnan(e2e.sum)
    assert snap.bad_lines == 1  # the unreadable le
    assert snap.running == 0.0  # absent while waiting is present


def test_open_label_sets_are_summed() -> None:
    text = ('vllm:num_requests_waiting{engine="0",model_name="m",pid="11"} 2\n'
            'vllm:num_requests_waiting{engine="0",model_name="m",pid="12"} 3\n'
            'vllm:num_requests_running{model_name="m"} 1\n'
            'vllm:request_success_total{finished_reason="stop",model_name="m"} 4\n'
            'vllm:request_success_total{finished_reason="abort",model_name="m"} 1\n')
    snap = read_vllm(text)
    assert (snap.waiting, snap.running, dict(snap.counters)) == (5.0, 1.0,
                                                                 {"request_success": 5.0})
    assert snap.kv_cache_usage is None


def _two_models() -> str:
    a = render_page([_engine(0, "0.12")], model_name="org/a")
    b = render_page([_engine(1, "0.12"), _engine(2, "0.12")], model_name="org/b")
    return a + "".join(line + "\n" for line in b.splitlines() if line.startswith("vllm:"))


def test_model_name_filter() -> None:
    text = _two_models()
    only_a = read_vllm(text, model_name="org/a")
    only_b = read_vllm(text, model_name="org/b")
    both = read_vllm(text)
    assert (only_a.waiting, only_b.waiting, both.waiting) == (0.0, 9.0, 9.0)
    assert (only_a.running, only_b.running) == (2.0, 7.0)
    assert only_b.kv_cache_usage == pytest.approx(0.35)
    assert only_a.counters["prompt_tokens"] == 1000.0
    assert only_a.histograms["ttft"].count == 4.0
    assert both.model_names == only_a.model_names == {"org/a", "org/b"}


def test_unknown_model_name_is_a_page_error() -> None:
    with pytest.raises(PageError) as info:
        read_vllm(_two_models(), model_name="org/c")
    assert str(info.value) == (
        "no vllm:num_requests_waiting or vllm:num_requests_running series with "
        "model_name='org/c'; the page serves ['org/a', 'org/b']: check the configured model "
        "name")


def test_non_vllm_page_is_a_page_error() -> None:
    with pytest.raises(PageError) as info:
        read_vllm((FIXTURES / "dcgm_exporter_2.x_k8s.txt").read_text())
    assert str(info.value) == (
        "no vllm:num_requests_waiting or vllm:num_requests_running on the page: is this a "
        "vLLM /metrics endpoint?")
    with pytest.raises(PageError):
        read_vllm("<html><body>502 Bad Gateway</body></html>\n")


@pytest.mark.parametrize(("line", "message"), [
    ('vllm:num_requests_waiting{model_name="m"} -1',
     "vllm:num_requests_waiting{model_name=\"m\"} is -1.0: a queue length must be a finite number "
     ">= 0; is the server healthy?"),
    ("vllm:num_requests_running NaN",
     "vllm:num_requests_running is nan: a running-request count must be a finite number >= 0; "
     "is the server healthy?"),
    ('vllm:kv_cache_usage_perc{engine="1"} NaN',
     "vllm:kv_cache_usage_perc{engine=\"1\"} is nan: KV-cache use must be a finite number >= 0; "
     "is the server healthy?"),
])
def test_impossible_gauge_values_are_page_errors(line: str, message: str) -> None:
    with pytest.raises(PageError) as info:
        read_vllm("vllm:num_requests_waiting 0\nvllm:num_requests_running 0\n" + line + "\n")
    assert str(info.value) == message


def test_bad_lines_in_read_families_are_counted_and_skipped() -> None:
    text = render_page([_engine(0, "0.12")])
    text += 'vllm:num_requests_waiting{model_name="broken} 7\nvllm:prompt_tokens_total oops\n'
    snap = read_vllm(text)
    assert snap.bad_lines == 2
    assert snap.waiting == 0.0


def test_sample_names_cover_every_version() -> None:
    for version in VLLM_VERSIONS:
        text = render_page([_engine(0, version)], version=version)
        on_page = {line.split("{")[0].split(" ")[0] for line in text.splitlines()
                   if line.startswith("vllm:")}
        assert "vllm:num_requests_waiting" in on_page & VLLM_SAMPLE_NAMES
        assert len(on_page & VLLM_SAMPLE_NAMES) >= 15


def test_sglang_page() -> None:
    text = ('# TYPE sglang:num_queue_reqs gauge\n'
            'sglang:num_queue_reqs{model_name="q",dp_rank="0"} 4\n'
            'sglang:num_queue_reqs{model_name="q",dp_rank="1"} 1\n'
            'sglang:num_running_reqs{model_name="q",dp_rank="0"} 8\n'
            'sglang:token_usage{model_name="q",dp_rank="0"} 0.5\n'
            'sglang:token_usage{model_name="q",dp_rank="1"} 0.7\n'
            'sglang:prompt_tokens_total{model_name="q"} 900\n'
            'sglang:time_to_first_token_seconds_bucket{model_name="q",le="1.0"} 3\n'
            'sglang:time_to_first_token_seconds_bucket{model_name="q",le="+Inf"} 4\n'
            'sglang:time_to_first_token_seconds_sum{model_name="q"} 5.5\n'
            'sglang:time_to_first_token_seconds_count{model_name="q"} 4\n')
    snap = read_page(text, server="sglang", model_name="q")
    assert (snap.waiting, snap.running) == (5.0, 8.0)
    assert snap.kv_cache_usage == pytest.approx(0.6)
    assert dict(snap.counters) == {"prompt_tokens": 900.0}
    assert snap.histograms["ttft"] == HistogramSnapshot((1.0, math.inf), (3.0, 4.0), 5.5, 4.0)
    with pytest.raises(PageError, match="is this a SGLang /metrics endpoint"):
        read_page(render_page([EngineState()]), server="sglang")


def test_tgi_page() -> None:
    text = ("tgi_queue_size 6\ntgi_batch_current_size 12\ntgi_request_success 40\n"
            'tgi_request_duration_bucket{le="1"} 10\ntgi_request_duration_bucket{le="+Inf"} 40\n'
            "tgi_request_duration_sum 80\ntgi_request_duration_count 40\n")
    snap = read_page(text, server="tgi", model_name="anything")
    assert (snap.waiting, snap.running, snap.kv_cache_usage) == (6.0, 12.0, None)
    assert dict(snap.counters) == {"request_success": 40.0}
    assert snap.histograms["e2e"].count == 40.0
    with pytest.raises(ValueError, match="unknown server 'trt'"):
        read_page(text, server="trt")  # type: ignore[arg-type]


@pytest.mark.parametrize("version", VLLM_VERSIONS)
def test_reading_only_some_histograms_gives_the_same_answer_for_those(version: str) -> None:
    from adapters.formats.vllm import read_page, sample_names

    page = render_page([_engine(i, version) for i in range(3)], version=version)
    full = read_page(page)
    ttft = read_page(page, histograms=frozenset({"ttft"}))
    assert set(ttft.histograms) == {"ttft"}
    assert ttft.histograms["ttft"] == full.histograms["ttft"]
    assert (ttft.waiting, ttft.running, ttft.counters) == (full.waiting, full.running,
                                                            full.counters)
    assert sample_names("vllm", frozenset({"ttft"})) < sample_names("vllm")
