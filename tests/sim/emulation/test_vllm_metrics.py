"""Rendered vLLM pages: the families, labels and layout of each supported version."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scaler.sim.emulation.engine_state import EngineState
from scaler.sim.emulation.vllm_metrics import render_page
from scaler.sim.emulation.vllm_versions import VLLM_VERSIONS


@pytest.mark.parametrize("version", VLLM_VERSIONS)
def test_rendered_pages_have_a_real_page_shape(version: str) -> None:
    engine = EngineState(bucket_version=version)
    text = render_page([engine], version=version)
    lines = text.splitlines()
    assert 350 <= len(lines) <= 500
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["vllm:num_requests_waiting"].type == "gauge"
    assert families["vllm:iteration_tokens_total"].type == "histogram"
    assert ("vllm:prompt_tokens_created" in families) == (version != "0.6")
    assert ("vllm:kv_cache_usage_perc" in families) == (version in ("0.9.2", "0.12"))
    assert ("vllm:gpu_cache_usage_perc" in families) == (version != "0.12")
    assert ("vllm:inter_token_latency_seconds" in families) == (version == "0.12")
    assert ("vllm:time_per_output_token_seconds" in families) == (version != "0.12")
    assert ("process_start_time_seconds" in families) == (version != "0.6")
    engine_label = version in ("0.8.3", "0.9.2", "0.12")
    assert ('engine="0"' in text) == engine_label
    four = render_page([EngineState(bucket_version=version) for _ in range(4)], version=version)
    waiting = [ln for ln in four.splitlines() if ln.startswith("vllm:num_requests_waiting{")]
    assert len(waiting) == (4 if engine_label else 1)


def test_v1_counter_is_followed_by_its_created_family() -> None:
    lines = render_page([EngineState(created=1738217335.8407154)]).splitlines()
    start = lines.index("# TYPE vllm:prompt_tokens_total counter")
    assert lines[start + 1 : start + 5] == [
        'vllm:prompt_tokens_total{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0',
        "# HELP vllm:prompt_tokens_created Number of prefill tokens processed.",
        "# TYPE vllm:prompt_tokens_created gauge",
        'vllm:prompt_tokens_created{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"}'
        " 1.7382173358407154e+09",
    ]


def test_v0_histogram_layout_matches_the_fixture() -> None:
    text = render_page([EngineState(bucket_version="0.6")], version="0.6")
    lines = text.splitlines()
    start = lines.index("# TYPE vllm:iteration_tokens_total histogram")
    assert lines[start + 1].startswith("vllm:iteration_tokens_total_sum{model_name=")
    assert lines[start + 2].startswith('vllm:iteration_tokens_total_bucket{le="1.0",model_name=')
    assert lines[start + 4].startswith('vllm:iteration_tokens_total_bucket{le="4.0",')
    assert lines[0] == "# TYPE vllm:cache_config_info gauge"


def test_unknown_version_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown vLLM version '0\.5'"):
        render_page([EngineState()], version="0.5")
