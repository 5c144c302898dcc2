"""The service finding a Deployment's pods through the Kubernetes API (kmock), scraping them."""

from __future__ import annotations

import math
import socket
from collections.abc import AsyncIterator

import kmock as kmock_lib
import numpy as np
import pytest
from kubernetes_asyncio.client import ApiClient, Configuration, CoreV1Api

from scaler.model.observe import fleet_state
from scaler.service.service import ScalerService, Unavailable
from scaler.sim.emulation.engine_state import EngineState
from scaler.sim.emulation.pod_server import EmulatedVllmPod
from tests.adapters.kubernetes.test_discovery import DEPLOYMENTS, PODS
from tests.adapters.kubernetes.test_errors import status
from tests.adapters.kubernetes.test_pods import NS, pod
from tests.clock import ManualClock
from tests.conftest import make_config, wait_until


def shared_port() -> int:
    """A port free on both 127.0.0.2 and 127.0.0.3 (pods share their metrics port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def api(kmock: kmock_lib.KubernetesEmulator) -> AsyncIterator[ApiClient]:
    kmock.resources["v1/pods"] = {}
    kmock.objects[DEPLOYMENTS, NS, "llama"] = {"spec": {"selector": {
        "matchLabels": {"app": "llama"}}}}
    async with ApiClient(Configuration(host=str(kmock.url))) as client:
        yield client


@pytest.fixture
async def kube_service(api: ApiClient) -> AsyncIterator[ScalerService]:
    """A started service on a hand-moved clock, finding pods through kmock's API."""
    service = ScalerService(make_config(), clock=ManualClock(), background=False, kube_api=api)
    await service.start()
    yield service
    await service.stop()


async def test_discovered_pods_are_scraped_as_they_come_and_go(api, kmock):
    port = shared_port()
    first = EmulatedVllmPod([EngineState(waiting=20)], host="127.0.0.2", port=port)
    second = EmulatedVllmPod([EngineState(waiting=10)], host="127.0.0.3", port=port)
    await first.start()
    await second.start()
    service = ScalerService(make_config(), clock=ManualClock(), background=False,
                            kube_api=api)
    await service.start()
    try:
        kmock.objects[PODS, NS, "llama-a"] = pod("llama-a", ready=True, ip="127.0.0.2")
        replicas = {"n": 2}
        kmock["get", DEPLOYMENTS, kmock_lib.name("llama"), kmock_lib.subresource("scale")] << (
            lambda: {"apiVersion": "autoscaling/v1", "kind": "Scale",
                     "metadata": {"name": "llama", "namespace": NS},
                     "spec": {"replicas": replicas["n"]}})
        meta = {"deployment": "llama", "metricsPort": str(port), "policy": "reactive"}
        workload = service.resolve(NS, "llama", meta)
        with pytest.raises(Unavailable, match=r"waiting for the first pod list|no scrape"):
            service.answer(workload)
        assert workload.discovery is not None
        await wait_until(workload.discovery.synced.is_set)
        await service.scrape(workload)
        assert service.answer(workload).decision.desired_replicas == 4  # 20 waiting / 5

        core = CoreV1Api(api)
        await core.create_namespaced_pod(NS, pod("llama-b", ready=True, ip="127.0.0.3"))
        await wait_until(lambda: len(workload.discovery.ready_endpoints()) == 2)
        await service.scrape(workload)
        assert sorted(workload.pods) == [first.url, second.url]
        assert service.answer(workload).decision.desired_replicas == 6  # 30 waiting / 5
        states = dict(workload.pods)
        service.resolve(NS, "llama", {**meta, "headroom": "1.2"})  # other metadata changed
        assert workload.pods == states  # the discovered pods keep their history

        replicas["n"] = 3  # KEDA/HPA scaled the Deployment up
        await core.create_namespaced_pod(NS, pod("llama-c", ready=False, ip=None))
        await wait_until(lambda: workload.discovery.counts().starting == 1)
        state = fleet_state(workload, service.clock.monotonic(), 15)
        assert (state.replicas, state.starting_replicas) == (2, 1)  # the scale read earlier
        service.clock.advance(30)
        await service.scrape(workload)  # reads the scale subresource again: 3 now
        state = fleet_state(workload, service.clock.monotonic(), 15)
        assert (state.replicas, state.starting_replicas) == (3, 1)

        await core.delete_namespaced_pod("llama-a", NS)
        await wait_until(lambda: len(workload.discovery.ready_endpoints()) == 1)
        await service.scrape(workload)
        assert list(workload.pods) == [second.url]
    finally:
        await service.stop()
        await first.stop()
        await second.stop()


async def test_without_api_access_the_answer_says_what_to_do():
    service = ScalerService(make_config(), clock=ManualClock(), background=False)
    await service.start()
    try:
        workload = service.resolve(NS, "llama", {"deployment": "llama"})
        with pytest.raises(Unavailable, match="pod discovery needs the Kubernetes API"):
            service.answer(workload)
    finally:
        await service.stop()


async def test_a_kubeconfig_is_used_outside_a_cluster(api, kmock, tmp_path, monkeypatch):
    from adapters.kubernetes.client import kube_client

    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(f"""
apiVersion: v1
kind: Config
clusters: [{{name: test, cluster: {{server: "{kmock.url}"}}}}]
users: [{{name: test, user: {{token: not-a-secret}}}}]
contexts: [{{name: test, context: {{cluster: test, user: test}}}}]
current-context: test
""")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    client = await kube_client()
    try:
        assert client.configuration.host == str(kmock.url).rstrip("/")
        pods = await CoreV1Api(client).list_namespaced_pod(NS)
        assert pods.items == []
    finally:
        await client.close()


def dcgm_page(pod_name: str, util: float) -> str:
    return ("# TYPE DCGM_FI_DEV_GPU_UTIL gauge\n"
            f'DCGM_FI_DEV_GPU_UTIL{{gpu="0",UUID="GPU-{pod_name}",Hostname="n",'
            f'namespace="{NS}",pod="{pod_name}"}} {util}\n')


def serving(text: str):
    from aiohttp import web

    async def handle(_request: web.Request) -> web.Response:
        return web.Response(text=text)

    return handle


async def test_dcgm_exporter_pods_found_by_selector_feed_every_workload(api, kmock):
    import dataclasses

    from aiohttp import web

    port = shared_port()
    runners = []
    for ip, page in (("127.0.0.4", dcgm_page("llama-a", 87)),
                     ("127.0.0.5", dcgm_page("other-pod", 5))):
        app = web.Application()
        app.router.add_get("/metrics", serving(page))
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, ip, port).start()
        runners.append(runner)
    vllm_port = shared_port()
    llama = EmulatedVllmPod([EngineState(running=3)], host="127.0.0.2", port=vllm_port)
    await llama.start()
    for name, ip in (("dcgm-1", "127.0.0.4"), ("dcgm-2", "127.0.0.5")):
        body = pod(name, ready=True, ip=ip)
        body["metadata"].update(namespace="gpu-operator", labels={"app": "dcgm"})
        kmock.objects[PODS, "gpu-operator", name] = body
    kmock.objects[PODS, NS, "llama-a"] = pod("llama-a", ready=True, ip="127.0.0.2")
    config = make_config()
    config = dataclasses.replace(config, gpu=dataclasses.replace(
        config.gpu, selector="app=dcgm", namespace="gpu-operator", port=port))
    service = ScalerService(config, clock=ManualClock(), background=False, kube_api=api)
    await service.start()
    try:
        assert service.gpu_index is not None
        workload = service.resolve(NS, "llama", {"deployment": "llama",
                                                 "metricsPort": str(vllm_port)})
        await wait_until(workload.discovery.synced.is_set)
        await wait_until(service.gpu_index.discovery.synced.is_set)
        await service.gpu_index.refresh()
        await service.scrape(workload)
        assert workload.gpu_by_pod["llama-a"].util_pct == 87
        assert "other-pod" not in workload.gpu_by_pod
        service.clock.advance(20)  # the pages are now older than stale_after_s
        await service.scrape(workload)
        assert workload.gpu_by_pod == {}
    finally:
        await service.stop()
        await llama.stop()
        for runner in runners:
            await runner.cleanup()


def office_hours_history(until_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Five-minute steps from 0 to ``until_s``: 200 req/s from 09:00 to 17:00, else none."""
    times = np.arange(0.0, until_s, 300.0)
    hours = (times % 86400) / 3600
    return times, np.where((hours >= 9) & (hours < 17), 200.0, 0.0)


def scale_replicas(kmock: kmock_lib.KubernetesEmulator) -> dict[str, int]:
    """The Deployment's scale subresource, answering whatever ``replicas["n"]`` holds."""
    replicas = {"n": 0}
    kmock["get", DEPLOYMENTS, kmock_lib.name("llama"), kmock_lib.subresource("scale")] << (
        lambda: {"apiVersion": "autoscaling/v1", "kind": "Scale",
                 "metadata": {"name": "llama", "namespace": NS},
                 "spec": {"replicas": replicas["n"]}})
    return replicas


async def test_a_workload_at_zero_wakes_one_lead_time_before_a_forecast_ramp(
        api, kube_service, kmock):
    """No pod at all is not missing data: the plan answers, idle at night, active at 08:57."""
    replicas = scale_replicas(kmock)
    service = kube_service
    night = 7 * 86400 + 3 * 3600
    service.clock.advance(night - service.clock.monotonic())
    workload = service.resolve(NS, "llama", {"deployment": "llama", "minReplicas": "0"})
    assert workload.planner is not None and workload.discovery is not None
    times, history = office_hours_history(night)
    workload.planner.forecaster.warm_start(times, history)
    workload.planner.warm_started(float(times[-1]))
    await wait_until(workload.discovery.synced.is_set)
    await service.scrape(workload)
    at_night = service.answer(workload).decision
    assert (at_night.active, at_night.desired_replicas) == (False, 0)
    assert "no ready pod" in at_night.reason

    service.clock.advance(6 * 3600 - 150)  # 08:57:30, no request seen anywhere
    await service.scrape(workload)
    early = service.answer(workload).decision
    assert early.active and early.desired_replicas >= 1

    replicas["n"] = early.desired_replicas  # KEDA woke it: a pod starts, none is ready
    await CoreV1Api(api).create_namespaced_pod(NS, pod("llama-a", ready=False, ip=None))
    await wait_until(lambda: workload.discovery.counts().starting == 1)
    service.clock.advance(15)
    await service.scrape(workload)
    starting = service.answer(workload).decision
    assert starting.active and starting.desired_replicas >= early.desired_replicas
    state = fleet_state(workload, service.clock.monotonic(), 15)
    assert math.isnan(state.observed_rate)  # unseen, not zero: nothing false is learnt


async def test_a_reactive_workload_at_zero_stays_there_and_says_why(kube_service, kmock):
    scale_replicas(kmock)
    service = kube_service
    workload = service.resolve(NS, "llama", {"deployment": "llama", "policy": "reactive"})
    assert workload.discovery is not None
    await wait_until(workload.discovery.synced.is_set)
    await service.scrape(workload)
    decision = service.answer(workload).decision
    assert (decision.active, decision.desired_replicas) == (False, 0)
    assert "use policy predictive" in decision.reason


async def test_no_pod_seen_through_a_failing_watch_is_unavailable_naming_it(
        kube_service, kmock):
    """The cache may be stale while the watch fails: no pod in it is no proof of zero."""
    scale_replicas(kmock)
    kmock["watch", PODS] << 403 << status(403, "Forbidden", "cannot watch pods")
    service = kube_service
    workload = service.resolve(NS, "llama", {"deployment": "llama"})
    assert workload.discovery is not None
    await wait_until(lambda: workload.discovery.last_error is not None)
    await service.scrape(workload)
    with pytest.raises(Unavailable, match=r"no pod found to read .*: pod discovery is "
                                          r"failing \(WATCH pods .* 403"):
        service.answer(workload)


async def test_an_answer_without_ready_pods_ages_from_its_decision(kube_service, kmock):
    """Answered at zero, then no scrape round completes: the answer runs out as data would."""
    scale_replicas(kmock)
    service = kube_service
    workload = service.resolve(NS, "llama", {"deployment": "llama"})
    assert workload.discovery is not None
    await wait_until(workload.discovery.synced.is_set)
    await service.scrape(workload)
    service.clock.advance(10)
    assert service.answer(workload).data_age_s == 10
    service.clock.advance(10)  # past scrape.stale_after_s (15 s)
    with pytest.raises(Unavailable, match="the last decision is 20 s old"):
        service.answer(workload)
