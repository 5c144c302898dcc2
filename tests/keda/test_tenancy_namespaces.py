"""tenancy.cross_namespace false (the default): a ScaledObject reads its own namespace only.

``podNamespace`` naming another namespace is refused before any Kubernetes call; a
``prometheusSelector`` is held to the ScaledObject's namespace (checked against a real
Prometheus scraping pods of two namespaces) and one naming another is refused;
``historyQuery`` is the operator's (``tuning``); every value put into PromQL is escaped.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import kmock as kmock_lib
import pytest
from kubernetes_asyncio.client import ApiClient, Configuration

from adapters.sources.prometheus_pods import pod_matchers
from scaler.config.load import parse_config
from scaler.keda.proto import externalscaler_pb2 as pb
from scaler.service.service import ScalerService
from scaler.sim.emulation.engine_state import EngineState
from scaler.sim.emulation.pod_server import EmulatedVllmPod
from tests.clock import ManualClock
from tests.conftest import StartApp, config_from
from tests.prometheus_server import free_port, wait_ready

needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="needs the Debian prometheus package (.ci/run installs it)")

TEAM_A, TEAM_B = "team-a", "team-b"


def ref(namespace: str = TEAM_A, name: str = "llama", **metadata: str) -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name=name, namespace=namespace, scalerMetadata=metadata)


async def refusal(keda, request: pb.ScaledObjectRef) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await keda.GetMetricSpec(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    return info.value


async def test_another_pod_namespace_is_refused_before_any_kubernetes_call(
        start: StartApp, kmock: kmock_lib.KubernetesEmulator) -> None:
    kmock.resources["v1/pods"] = {}
    async with ApiClient(Configuration(host=str(kmock.url))) as api:
        running = await start(kube_api=api)
        error = await refusal(running.keda, ref(deployment="llama", podNamespace=TEAM_B))
        assert "'podNamespace'" in error.details() and "tenancy.cross_namespace" in \
            error.details()
        assert len(running.service.registry) == 0
        assert len(kmock) == 0  # not one request reached the Kubernetes API
        await running.keda.GetMetricSpec(ref(deployment="llama", podNamespace=TEAM_A))
        allowed = await start("tenancy:\n  cross_namespace: true\n", kube_api=api)
        await allowed.keda.GetMetricSpec(ref(deployment="llama", podNamespace=TEAM_B))


@pytest.mark.parametrize("selector", [
    'namespace=~".+"', f'namespace="{TEAM_B}"', 'job="vllm",namespace!="x"',
    f'job="vllm"}} or {{namespace="{TEAM_B}"', 'job="vllm"} or vector(1) or {a="b"'])
async def test_a_prometheus_selector_reaching_elsewhere_is_refused(
        start: StartApp, selector: str) -> None:
    running = await start(f"prometheus:\n  url: http://127.0.0.1:{free_port()}\n")
    error = await refusal(running.keda, ref(metricsSource="prometheus",
                                            prometheusSelector=selector))
    assert "'prometheusSelector'" in error.details()
    assert len(running.service.registry) == 0


async def test_history_query_is_the_operator_s(start: StartApp) -> None:
    query = 'sum(rate(vllm:request_success_total{namespace="team-b"}[5m]))'
    url = f"http://127.0.0.1:{free_port()}"
    running = await start(f"prometheus:\n  url: {url}\n")
    error = await refusal(running.keda, ref(endpoints="http://127.0.0.1:1/metrics",
                                            historyQuery=query))
    assert "'historyQuery'" in error.details() and "tuning" in error.details()
    from_env = await refusal(running.keda, ref(endpoints="http://127.0.0.1:1/metrics",
                                                historyQueryFromEnv=query))
    assert "'historyQuery'" in from_env.details()
    assert len(running.service.registry) == 0
    operator = await start(
        f"prometheus:\n  url: {url}\ntuning:\n  workloads:\n    team-a/llama:\n"
        f"      historyQuery: '{query}'\n")
    await operator.keda.GetMetricSpec(ref(endpoints="http://127.0.0.1:1/metrics"))


async def test_values_put_into_promql_are_escaped() -> None:
    hostile = 'x"} or vector(1) or {a="\\'
    config = parse_config(
        "prometheus:\n  url: http://127.0.0.1:1\n  history_query: "
        "'sum(rate(vllm:request_success_total{namespace=\"{namespace}\","
        "pod=~\"{scaledobject}-.*\"}[5m]))'\n")
    service = ScalerService(config, clock=ManualClock(), background=False)
    workload = service.resolve(hostile, hostile, {"endpoints": "http://127.0.0.1:1/metrics"})
    query = service.forecasting.history_query(workload)
    escaped = 'x\\"} or vector(1) or {a=\\"\\\\'
    assert query == ('sum(rate(vllm:request_success_total{namespace="' + escaped + '",'
                     'pod=~"' + escaped + '-.*"}[5m]))')
    assert pod_matchers(hostile, ["p"]) == f'namespace="{escaped}",pod=~"p"'


@pytest.fixture
async def two_namespaces(tmp_path: Path) -> AsyncIterator[str]:
    """A real Prometheus scraping one pod in team-a (2 waiting) and one in team-b (30)."""
    pods = [EmulatedVllmPod([EngineState(waiting=2)]), EmulatedVllmPod([EngineState(waiting=30)])]
    for one in pods:
        await one.start()
    targets = "\n".join(
        f"      - targets: ['127.0.0.1:{one.port}']\n"
        f"        labels: {{namespace: {namespace}, pod: llama-{namespace}}}"
        for one, namespace in zip(pods, (TEAM_A, TEAM_B), strict=True))
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
        await _both_scraped(url)
        yield url
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 10)
        for one in pods:
            await one.stop()


async def _both_scraped(url: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session, asyncio.timeout(30):
        while True:
            async with session.get(f"{url}/api/v1/query",
                                   params={"query": 'vllm:num_requests_waiting'}) as resp:
                if len((await resp.json())["data"]["result"]) == 2:
                    return
            await asyncio.sleep(0.2)


@needs_prometheus
async def test_a_prometheus_selector_reads_the_scaled_object_s_namespace_only(
        two_namespaces: str) -> None:
    config = config_from(f"prometheus:\n  url: {two_namespaces}\n")
    service = ScalerService(config, clock=ManualClock(), background=False)
    await service.start()
    try:
        workload = service.resolve(TEAM_A, "llama", {
            "metricsSource": "prometheus", "prometheusSelector": 'job="vllm"',
            "policy": "reactive"})
        await service.scrape(workload)
        assert [p.endpoint.pod for p in workload.pods.values()] == [f"llama-{TEAM_A}"]
        assert service.answer(workload).decision.desired_replicas == 1  # 2 waiting, not 32
        assert service.prometheus_source is not None
        assert f'namespace="{TEAM_A}"' in (service.prometheus_source.query(workload) or "")
    finally:
        await service.stop()
