"""The emulated vLLM pod seen through PageFetcher: pages, versions and every fault mode."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from adapters.formats.promtext import PageError
from adapters.formats.vllm import read_vllm
from adapters.sources.scrape import ACCEPT, PageFetcher, ScrapeError
from scaler.sim.emulation.engine_state import EngineState
from scaler.sim.emulation.pod_server import EmulatedVllmPod


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

