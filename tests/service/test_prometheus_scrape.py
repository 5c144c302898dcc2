"""metricsSource prometheus: pod metrics read from a real Prometheus scraping emulated pods,
and the fall back to scraping the pods directly while Prometheus cannot be read."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from adapters.formats.vllm import read_samples
from adapters.sources.prometheus_pods import group_by_pod, pod_matchers, samples_query
from scaler.clock import SystemClock
from scaler.config.settings import PrometheusSettings, ServiceConfig
from scaler.keda.metadata import MetadataError
from scaler.service.service import ScalerService, Unavailable
from scaler.sim.emulation.engine_state import EngineState
from scaler.sim.emulation.pod_server import EmulatedVllmPod
from tests.clock import ManualClock
from tests.conftest import make_config
from tests.prometheus_server import free_port, wait_ready

needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="needs the Debian prometheus package (.ci/run installs it)")

NS = "llm"


def with_prometheus(url: str, **settings: object) -> ServiceConfig:
    config = make_config()
    return dataclasses.replace(config, prometheus=PrometheusSettings(url=url, **settings))


def test_the_query_asks_for_exactly_the_reader_s_series() -> None:
    query = samples_query({"vllm:num_requests_waiting", "vllm:num_requests_running"},
                          pod_matchers("llm", ["llama-1", "llama-0.x"]), 60)
    assert query == ('{__name__=~"vllm:num_requests_running|vllm:num_requests_waiting",'
                     'namespace="llm",pod=~"llama\\\\-0\\\\.x|llama\\\\-1"}[60s]')
    with pytest.raises(ValueError, match="not a Prometheus metric name"):
        samples_query({'up"} or vector(1'}, "", 60)


def test_the_newest_sample_of_each_series_is_grouped_by_pod() -> None:
    series = [
        {"metric": {"__name__": "vllm:num_requests_waiting", "pod": "a", "model_name": "m"},
         "values": [[100.0, "3"], [115.0, "5"]]},
        {"metric": {"__name__": "vllm:num_requests_running", "pod": "a", "model_name": "m"},
         "values": [[114.0, "7"]]},
        {"metric": {"__name__": "vllm:num_requests_waiting", "instance": "x"},  # no pod label
         "values": [[115.0, "9"]]},
    ]
    (pod,) = group_by_pod(series).items()
    name, samples = pod
    assert name == "a" and samples.scraped_s == 115.0
    snapshot = read_samples(samples.page, model_name="m")
    assert (snapshot.waiting, snapshot.running) == (5.0, 7.0)


async def test_metrics_source_prometheus_needs_a_prometheus_url() -> None:
    service = ScalerService(make_config(), clock=ManualClock(), background=False)
    with pytest.raises(MetadataError, match=r"metricsSource.*prometheus\.url"):
        service.spec_for({"metricsSource": "prometheus", "prometheusSelector": 'job="vllm"'})


@pytest.fixture
async def emulated_pods() -> AsyncIterator[list[EmulatedVllmPod]]:
    pods = [EmulatedVllmPod([EngineState(running=4, waiting=2, kv_cache_usage=0.5)]),
            EmulatedVllmPod([EngineState(running=6, waiting=0, kv_cache_usage=0.25)])]
    for pod in pods:
        await pod.start()
    yield pods
    for pod in pods:
        await pod.stop()


@pytest.fixture
async def prometheus(tmp_path: Path,
                     emulated_pods: list[EmulatedVllmPod]) -> AsyncIterator[str]:
    """A real Prometheus scraping the two pods every second, labelled as Kubernetes would."""
    targets = "\n".join(
        f"      - targets: ['127.0.0.1:{pod.port}']\n"
        f"        labels: {{namespace: {NS}, pod: llama-{i}}}"
        for i, pod in enumerate(emulated_pods))
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: vllm\n"
        f"    static_configs:\n{targets}\n")
    port = free_port()
    proc = await asyncio.to_thread(
        subprocess.Popen,
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        await asyncio.to_thread(wait_ready, url)
        yield url
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 10)


async def _scraped(url: str, pods: int, finished: float) -> None:
    """Until Prometheus holds two samples of every pod, the newest with ``finished`` requests."""
    matchers = f'namespace="{NS}",finished_reason="stop"'
    query = samples_query({"vllm:request_success_total"}, matchers, 60)
    async with aiohttp.ClientSession() as session, asyncio.timeout(30):
        while True:
            async with session.get(f"{url}/api/v1/query", params={"query": query}) as resp:
                result = (await resp.json())["data"]["result"]
            if len(result) == pods and all(
                    len(s["values"]) >= 2 and float(s["values"][-1][1]) == finished
                    for s in result):
                return
            await asyncio.sleep(0.2)


@needs_prometheus
async def test_a_workload_named_by_a_selector_reads_its_pods_from_prometheus(
        prometheus: str, emulated_pods: list[EmulatedVllmPod]) -> None:
    for pod in emulated_pods:
        pod.engines[0].request_success["stop"] = 100.0
    await _scraped(prometheus, 2, 100.0)
    for pod in emulated_pods:  # served from now on: a rate between Prometheus' samples
        pod.engines[0].request_success["stop"] = 160.0
    service = ScalerService(with_prometheus(prometheus), clock=SystemClock(), background=False)
    await service.start()
    try:
        workload = service.resolve(NS, "llama", {"metricsSource": "prometheus",
                                                 "prometheusSelector": 'job="vllm"'})
        await service.scrape(workload)
        assert sorted(p.endpoint.pod for p in workload.pods.values()) == ["llama-0", "llama-1"]
        assert all(p.snapshot is not None for p in workload.pods.values())
        waiting = {p.endpoint.pod: p.snapshot.waiting for p in workload.pods.values()
                   if p.snapshot is not None}
        assert waiting == {"llama-0": 2.0, "llama-1": 0.0}
        assert service.answer(workload).decision.desired_replicas >= 1
        await _scraped(prometheus, 2, 160.0)
        await service.scrape(workload)
        rates = [p.window.rate("request_success") for p in workload.pods.values()]
        assert all(r is not None and r > 0 for r in rates)
        assert not any(p.problem for p in workload.pods.values())
    finally:
        await service.stop()


@needs_prometheus
@pytest.mark.parametrize("policy", ["predictive", "reactive"])
async def test_a_selector_matching_no_series_is_unavailable_not_zero(
        prometheus: str, emulated_pods: list[EmulatedVllmPod], policy: str) -> None:
    """No series is not no pods: Prometheus' list is not the cluster's, so nothing scales."""
    await _scraped(prometheus, 2, 0.0)
    service = ScalerService(with_prometheus(prometheus), clock=SystemClock(), background=False)
    await service.start()
    try:
        workload = service.resolve(NS, "llama", {"metricsSource": "prometheus", "policy": policy,
                                                 "prometheusSelector": 'job="renamed"'})
        await service.scrape(workload)
        assert workload.pods == {}
        with pytest.raises(Unavailable, match=r"no pod found to read .* Prometheus has no "
                           r"series for prometheusSelector 'job=\"renamed\"'"):
            service.answer(workload)
    finally:
        await service.stop()


@needs_prometheus
async def test_a_selector_only_workload_is_never_sent_to_zero(
        prometheus: str, emulated_pods: list[EmulatedVllmPod]) -> None:
    """At zero its series would age out like series gone missing: it keeps one replica."""
    for pod in emulated_pods:
        pod.engines = [EngineState()]  # idle
        pod.engines[0].request_success["stop"] = 7.0
    await _scraped(prometheus, 2, 7.0)
    service = ScalerService(with_prometheus(prometheus), clock=SystemClock(), background=False)
    await service.start()
    try:
        workload = service.resolve(NS, "llama", {"metricsSource": "prometheus",
                                                 "policy": "reactive",
                                                 "prometheusSelector": 'job="vllm"'})
        await service.scrape(workload)
        decision = service.answer(workload).decision
        assert (decision.desired_replicas, decision.active) == (1, True)
        assert "named only by prometheusSelector cannot be seen at zero" in decision.reason
    finally:
        await service.stop()


async def answer_with_prometheus_down(**metadata: str) -> str:
    """One scrape round with nothing listening at prometheus.url; the UNAVAILABLE message."""
    service = ScalerService(with_prometheus(f"http://127.0.0.1:{free_port()}",
                                            source_timeout_s=0.5),
                            clock=ManualClock(), background=False)
    await service.start()
    try:
        workload = service.resolve(NS, "llama", {"metricsSource": "prometheus", **metadata})
        await service.scrape(workload)
        with pytest.raises(Unavailable) as info:
            service.answer(workload)
        return str(info.value)
    finally:
        await service.stop()


async def test_stale_pods_behind_a_prometheus_outage_name_it() -> None:
    """Prometheus down and the pod it would fall back to down too: both are said (how the
    pod failed only in the log)."""
    pod = EmulatedVllmPod([EngineState()])
    await pod.start()
    await pod.stop()  # nothing listens there any more
    message = await answer_with_prometheus_down(endpoints=f"llama-0={pod.url}")
    assert re.search(r"metrics are stale .*: cannot read Prometheus \(.*\); 1 of 1 pod "
                     r"page\(s\) could not be fetched or read", message), message


async def test_a_prometheus_outage_is_named_not_taken_for_missing_series() -> None:
    message = await answer_with_prometheus_down(prometheusSelector='job="vllm"')
    assert re.search(r"no pod found to read .*: cannot read Prometheus \(.*\)$", message), \
        message


async def falls_back_to_the_pods(prometheus_url: str, pods: list[EmulatedVllmPod]) -> float:
    """Scrape a metricsSource prometheus workload once; its answer must come from its pods.

    Returns the outages counted."""
    service = ScalerService(with_prometheus(prometheus_url), clock=SystemClock(),
                            background=False)
    await service.start()
    try:
        endpoints = ",".join(f"llama-{i}={p.url}" for i, p in enumerate(pods))
        workload = service.resolve(NS, "llama", {"metricsSource": "prometheus",
                                                 "endpoints": endpoints})
        await service.scrape(workload)
        assert service.answer(workload).decision.desired_replicas >= 1
        assert sum(p.requests_served for p in pods) == len(pods)
        outages = service.telemetry.registry.get_sample_value(
            "scaler_scrape_errors_total", {"namespace": NS, "scaledobject": "llama",
                                           "source": "prometheus", "kind": "unreachable"})
        return outages or 0.0
    finally:
        await service.stop()


async def test_pods_are_scraped_directly_while_prometheus_cannot_be_read(
        emulated_pods: list[EmulatedVllmPod]) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert await falls_back_to_the_pods(down, emulated_pods) == 1


@needs_prometheus
async def test_only_a_pod_prometheus_has_not_seen_is_scraped_directly(
        prometheus: str, emulated_pods: list[EmulatedVllmPod]) -> None:
    await _scraped(prometheus, 2, 0.0)
    async with EmulatedVllmPod([EngineState(running=1)]) as new_pod:
        service = ScalerService(with_prometheus(prometheus), clock=SystemClock(),
                                background=False)
        await service.start()
        try:
            pods = [*emulated_pods, new_pod]
            endpoints = ",".join(f"llama-{i}={p.url}" for i, p in enumerate(pods))
            workload = service.resolve(NS, "llama", {"metricsSource": "prometheus",
                                                     "endpoints": endpoints})
            source = service.prometheus_source
            assert source is not None
            assert await source.read(workload) == [new_pod.url]
            assert new_pod.requests_served == 0
            await service.scrape(workload)
            assert new_pod.requests_served == 1
            assert all(p.snapshot is not None for p in workload.pods.values())
        finally:
            await service.stop()


def test_a_pod_is_read_from_the_target_scraped_last() -> None:
    """Two jobs scraping one pod (or a recreated pod's old address) are not added together."""
    def series(name: str, instance: str, t: float, value: str) -> dict[str, object]:
        return {"metric": {"__name__": name, "pod": "a", "job": "vllm", "instance": instance},
                "values": [[t, value]]}

    found = group_by_pod([
        series("vllm:num_requests_running", "10.0.0.1:8000", 950.0, "30"),  # the old pod
        series("vllm:num_requests_waiting", "10.0.0.1:8000", 950.0, "12"),
        series("vllm:num_requests_running", "10.0.0.9:8000", 1000.0, "2"),
        series("vllm:num_requests_waiting", "10.0.0.9:8000", 1000.0, "0"),
    ])
    snapshot = read_samples(found["a"].page)
    assert (snapshot.running, snapshot.waiting) == (2.0, 0.0)
    assert found["a"].scraped_s == 1000.0


@pytest.fixture
async def odd_prometheus() -> AsyncIterator[str]:
    """A server that answers success with values no Prometheus would send."""
    from aiohttp import web

    async def odd(request: web.Request) -> web.Response:
        return web.json_response({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"__name__": "vllm:num_requests_running", "pod": "llama-0"},
             "values": [[1]]}]}})

    app = web.Application()
    app.router.add_get("/api/v1/query", odd)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_an_unusable_answer_is_an_outage_and_the_pods_are_scraped(
        odd_prometheus: str, emulated_pods: list[EmulatedVllmPod]) -> None:
    assert await falls_back_to_the_pods(odd_prometheus, emulated_pods) == 1
