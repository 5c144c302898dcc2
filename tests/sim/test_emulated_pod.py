"""The emulated vLLM pod seen through PageFetcher: pages, versions and every fault mode."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from adapters.formats.promtext import PageError
from adapters.formats.vllm import read_vllm
from adapters.sources.scrape import ACCEPT, PageFetcher, ScrapeError
from scaler.sim.emulation.pod_server import EmulatedVllmPod
from scaler.sim.emulation.vllm_metrics import (
    VLLM_VERSIONS,
    EngineState,
    Histogram,
    format_value,
    render_page,
)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def pod() -> AsyncIterator[EmulatedVllmPod]:
    engines = [EngineState(running=4, waiting=2, kv_cache_usage=0.5),
               EngineState(running=6, waiting=1, kv_cache_usage=0.7)]
    async with EmulatedVllmPod(engines) as emulated:
        yield emulated


def _fetcher(session: aiohttp.ClientSession, timeout_s: float = 2.0) -> PageFetcher:
    return PageFetcher(session=session, timeout_s=timeout_s, max_concurrency=4)


async def test_healthy_pod_serves_a_readable_page(pod: EmulatedVllmPod,
                                                  session: aiohttp.ClientSession) -> None:
    assert pod.url == f"http://127.0.0.1:{pod.port}/metrics"
    snap = read_vllm(await _fetcher(session).fetch(pod.url))
    assert (snap.waiting, snap.running) == (3.0, 10.0)
    assert snap.kv_cache_usage == pytest.approx(0.6)
    assert pod.last_accept == ACCEPT
    assert pod.requests_served == 1


async def test_engines_and_version_change_at_run_time(pod: EmulatedVllmPod,
                                                      session: aiohttp.ClientSession) -> None:
    fetcher = _fetcher(session)
    pod.engines[0].waiting = 40
    assert read_vllm(await fetcher.fetch(pod.url)).waiting == 41.0
    pod.version = "0.6"
    text = await fetcher.fetch(pod.url)
    assert "vllm:num_requests_swapped" in text
    assert 'engine="' not in text
    assert read_vllm(text).waiting == 41.0


async def test_fault_http_500(pod: EmulatedVllmPod, session: aiohttp.ClientSession) -> None:
    pod.fault = "http_500"
    with pytest.raises(ScrapeError) as info:
        await _fetcher(session).fetch(pod.url)
    assert info.value.kind == "http_status"


async def test_fault_garbage(pod: EmulatedVllmPod, session: aiohttp.ClientSession) -> None:
    pod.fault = "garbage"
    text = await _fetcher(session).fetch(pod.url)
    assert text.startswith("<html>")
    with pytest.raises(PageError, match="is this a vLLM /metrics endpoint"):
        read_vllm(text)


async def test_fault_truncated(pod: EmulatedVllmPod, session: aiohttp.ClientSession) -> None:
    pod.fault = "truncated"
    with pytest.raises(ScrapeError) as info:
        await _fetcher(session).fetch(pod.url)
    assert info.value.kind == "connect"
    assert "lost the connection before the whole page arrived" in str(info.value)


async def test_fault_slow(pod: EmulatedVllmPod, session: aiohttp.ClientSession) -> None:
    pod.fault, pod.slow_s = "slow", 0.3
    started = time.monotonic()
    assert read_vllm(await _fetcher(session).fetch(pod.url)).running == 10.0
    assert time.monotonic() - started >= 0.3
    with pytest.raises(ScrapeError) as info:
        await _fetcher(session, timeout_s=0.1).fetch(pod.url)
    assert info.value.kind == "timeout"


async def test_fault_hang(pod: EmulatedVllmPod, session: aiohttp.ClientSession) -> None:
    pod.fault = "hang"
    started = time.monotonic()
    with pytest.raises(ScrapeError) as info:
        await _fetcher(session, timeout_s=0.2).fetch(pod.url)
    assert info.value.kind == "timeout"
    assert time.monotonic() - started < 1.0


async def test_down_then_restarted_on_the_same_url(pod: EmulatedVllmPod,
                                                   session: aiohttp.ClientSession) -> None:
    fetcher = _fetcher(session)
    url = pod.url
    await pod.stop()
    assert not pod.running
    with pytest.raises(ScrapeError) as info:
        await fetcher.fetch(url)
    assert info.value.kind == "connect"
    await pod.start()
    assert pod.url == url
    assert read_vllm(await fetcher.fetch(url)).running == 10.0


async def test_stop_releases_a_hung_request(session: aiohttp.ClientSession) -> None:
    emulated = EmulatedVllmPod()
    with pytest.raises(RuntimeError, match=r"only known after start\(\)"):
        _ = emulated.url
    await emulated.start()
    emulated.fault = "hang"
    with pytest.raises(ScrapeError):
        await _fetcher(session, timeout_s=0.1).fetch(emulated.url)
    started = time.monotonic()
    await emulated.stop()
    assert time.monotonic() - started < 1.0


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


def test_histogram_and_value_formatting() -> None:
    hist = Histogram([0.1, 1.0])
    for value in (0.05, 0.1, 0.5, 3.0):
        hist.observe(value)
    hist.observe(0.7, 2)
    assert hist.cumulative() == (2.0, 5.0, 6.0)
    assert (hist.count, hist.sum) == (6.0, pytest.approx(5.05))
    with pytest.raises(ValueError, match="strictly ascending"):
        Histogram([1.0, 1.0])
    with pytest.raises(ValueError, match="must be finite"):
        Histogram([1.0, math.inf])
    for value in (0.0, 1.0, 0.001, 2560.0, 123456.0, 1.74262400557e9, 3.1e10, 1e17, -2.5,
                  math.inf, -math.inf, math.nan, 1048576.0):
        assert format_value(value) == floatToGoString(value)
    with pytest.raises(ValueError, match=r"unknown vLLM version '0\.5'"):
        render_page([EngineState()], version="0.5")
