"""tenancy.endpoint_networks: trigger metadata never makes the scaler connect outside them.

"Outside" is a real listener on 127.0.0.2 that counts what it accepts, with the networks set to
127.0.0.1/32; every test ends by looking that it accepted nothing. Link-local addresses (cloud
metadata) are refused whatever the networks say, names are resolved (through an injected lookup,
so tests need no DNS) and each of their addresses checked, and redirects are never followed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence

import grpc
import kmock as kmock_lib
import pytest
from aiohttp import web
from kubernetes_asyncio.client import ApiClient, Configuration

from scaler.keda.proto import externalscaler_pb2 as pb
from scaler.sim.emulation.engine_state import EngineState
from scaler.sim.emulation.pod_server import EmulatedVllmPod
from tests.adapters.kubernetes.test_discovery import DEPLOYMENTS, PODS
from tests.adapters.kubernetes.test_pods import NS, pod
from tests.conftest import StartApp, config_from, scrape_all, wait_until
from tests.listener import Listener, serve

INSIDE_ONLY = "tenancy:\n  endpoint_networks: [127.0.0.1/32]\n"


def ref(name: str = "llama", namespace: str = NS, **metadata: str) -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name=name, namespace=namespace,
                              scalerMetadata={"policy": "reactive", **metadata})


async def refused(keda, request: pb.ScaledObjectRef) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await keda.GetMetricSpec(request)
    return info.value


@pytest.fixture
async def inside_pod() -> EmulatedVllmPod:
    async with EmulatedVllmPod([EngineState(waiting=10)]) as started:
        yield started


@pytest.mark.parametrize("key", ["endpoints", "gpuEndpoints"])
async def test_an_address_outside_the_networks_is_refused_and_never_connected(
        start: StartApp, inside_pod: EmulatedVllmPod, key: str) -> None:
    running = await start(INSIDE_ONLY)
    async with Listener() as outside:
        metadata = {"endpoints": inside_pod.url, key: outside.url}
        error = await refused(running.keda, ref(**metadata))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"'{key}'" in error.details() and "tenancy.endpoint_networks" in error.details()
        assert "127.0.0.2" in error.details()
        assert len(running.service.registry) == 0
        await scrape_all(running.app)
        assert outside.accepted == 0


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/", "http://[fe80::1]:8000/metrics",
    "http://[::ffff:169.254.169.254]/latest/meta-data/"])
async def test_link_local_is_refused_even_with_the_default_networks(
        start: StartApp, url: str) -> None:
    running = await start()
    for key in ("endpoints", "gpuEndpoints"):
        metadata = {"endpoints": "http://127.0.0.1:1/metrics", key: url}
        error = await refused(running.keda, ref(**metadata))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"'{key}'" in error.details() and "link-local" in error.details()
    assert len(running.service.registry) == 0


def lookup_of(table: dict[str, Sequence[str]]):
    """Name resolution from a table (the tests' DNS); unknown names fail as DNS would."""
    asked: list[str] = []

    async def lookup(host: str) -> Sequence[str]:
        asked.append(host)
        if host not in table:
            raise OSError(f"{host}: name not known")
        return table[host]

    lookup.asked = asked  # type: ignore[attr-defined]
    return lookup


@pytest.mark.parametrize("front", [False, True], ids=["one process", "front process"])
async def test_a_name_is_resolved_and_each_of_its_addresses_checked(
        start: StartApp, inside_pod: EmulatedVllmPod, front: bool) -> None:
    async with Listener() as outside:
        lookup = lookup_of({"mixed.pods.test": ["127.0.0.1", "127.0.0.2"],
                            "inside.pods.test": ["127.0.0.1"]})
        running = await start(INSIDE_ONLY, lookup=lookup, front=front)
        error = await refused(running.keda, ref(
            endpoints=f"http://mixed.pods.test:{outside.port}/metrics"))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "mixed.pods.test" in error.details() and "127.0.0.2" in error.details()
        assert "tenancy.endpoint_networks" in error.details()
        assert len(running.service.registry) == 0
        # A name whose every address is inside is scraped, through the same resolution.
        request = ref(endpoints=f"http://inside.pods.test:{inside_pod.port}/metrics")
        await running.keda.GetMetricSpec(request)
        await scrape_all(running.app)
        answer = await running.keda.GetMetrics(pb.GetMetricsRequest(
            scaledObjectRef=request, metricName="desired-replicas"))
        assert answer.metricValues[0].metricValue == 2  # 10 waiting / 5
        assert outside.accepted == 0


async def test_a_name_that_moves_outside_is_not_followed(
        start: StartApp, inside_pod: EmulatedVllmPod) -> None:
    """Checked at registration, a name is resolved and checked again by each new connection
    (answers cached ``ttl_s``): DNS pointing elsewhere later reaches nothing."""
    async with Listener(port=inside_pod.port) as outside:
        table = {"moving.pods.test": ["127.0.0.1"]}
        running = await start(INSIDE_ONLY, lookup=lookup_of(table))
        request = ref(endpoints=f"http://moving.pods.test:{inside_pod.port}/metrics")
        await running.keda.GetMetricSpec(request)  # resolved: inside
        table["moving.pods.test"] = ["127.0.0.2"]
        running.service.clock.advance(running.service.guard.ttl_s + 1)
        (workload,) = running.service.registry
        for _ in range(2):  # the workload's next rounds
            await running.service.scrape(workload)
        assert outside.accepted == 0 and inside_pod.requests_served == 0
        (pod,) = workload.pods.values()
        assert "tenancy.endpoint_networks" in (pod.problem or "")
        error = await refused(running.keda, request)  # and its next call is refused
        assert "tenancy.endpoint_networks" in error.details()


async def test_resolving_a_name_never_holds_other_calls(
        start: StartApp, inside_pod: EmulatedVllmPod) -> None:
    released = asyncio.Event()

    async def slow_lookup(host: str) -> Sequence[str]:
        await released.wait()
        return ["127.0.0.2"]

    running = await start(INSIDE_ONLY, lookup=slow_lookup)
    waiting = asyncio.ensure_future(running.keda.GetMetricSpec(ref(
        "slow", endpoints="http://slow.pods.test:8000/metrics")))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    answered = await asyncio.wait_for(
        running.keda.GetMetricSpec(ref("quick", endpoints=inside_pod.url)), 2)
    assert answered.metricSpecs[0].metricName == "desired-replicas"
    released.set()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await waiting
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tenancy.endpoint_networks" in info.value.details()


async def test_a_redirect_is_never_followed(start: StartApp) -> None:
    """A page answering 302 to an address outside: not followed (with the default networks
    too: no redirect is), and the caller learns nothing of why."""
    async with Listener() as outside:
        runner, base = await serve({"/metrics": lambda: web.HTTPFound(outside.url)})
        try:
            for config in ("", INSIDE_ONLY):
                running = await start(config)
                request = ref(endpoints=f"{base}/metrics")
                await running.keda.GetMetricSpec(request)
                await scrape_all(running.app)
                assert outside.accepted == 0
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await running.keda.IsActive(request)
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            await runner.cleanup()


async def test_a_tightened_list_refuses_at_the_next_call_and_connects_no_more(
        start: StartApp) -> None:
    async with Listener() as outside:
        running = await start()
        request = ref(endpoints=outside.url)
        await running.keda.GetMetricSpec(request)  # allowed by the default: all addresses
        await scrape_all(running.app)
        assert outside.accepted == 1
        service = running.service
        assert service.apply_config(dataclasses.replace(
            service.config, tenancy=config_from(INSIDE_ONLY).tenancy)) == []  # hot
        error = await refused(running.keda, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "tenancy.endpoint_networks" in error.details()
        for workload in service.registry:  # still registered until idle: scraped, not sent
            await service.scrape(workload)
        assert outside.accepted == 1


async def test_a_discovered_pod_outside_the_networks_is_never_scraped(
        start: StartApp, kmock: kmock_lib.KubernetesEmulator,
        caplog: pytest.LogCaptureFixture) -> None:
    kmock.resources["v1/pods"] = {}
    kmock.objects[DEPLOYMENTS, NS, "llama"] = {"spec": {"selector": {
        "matchLabels": {"app": "llama"}}}}
    async with Listener() as outside, ApiClient(Configuration(host=str(kmock.url))) as api:
        kmock.objects[PODS, NS, "llama-a"] = pod("llama-a", ready=True, ip=outside.host)
        running = await start(INSIDE_ONLY, kube_api=api)
        request = ref(deployment="llama", metricsPort=str(outside.port))
        await running.keda.GetMetricSpec(request)
        (workload,) = running.service.registry
        assert workload.discovery is not None
        await wait_until(workload.discovery.synced.is_set)
        with caplog.at_level(logging.WARNING, logger="scaler.service"):
            await scrape_all(running.app)
        assert outside.accepted == 0
        assert any("tenancy.endpoint_networks" in r.getMessage() for r in caplog.records)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await running.keda.IsActive(request)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_caller_cannot_tell_refused_404_and_not_vllm_apart(
        start: StartApp, caplog: pytest.LogCaptureFixture) -> None:
    """The UNAVAILABLE text is the same whatever answered (no port scanner); the log says."""
    runner, base = await serve({"/page": lambda: web.Response(text="<html>hello</html>\n")})
    async with Listener("127.0.0.1") as closed:
        pass  # its port is closed again: connection refused
    urls = {"refused": closed.url, "missing": f"{base}/nothing", "html": f"{base}/page"}
    try:
        running = await start()
        for name, url in urls.items():
            await running.keda.GetMetricSpec(ref(name, endpoints=url))
        with caplog.at_level(logging.WARNING, logger="scaler.service"):
            await scrape_all(running.app)
        texts = set()
        for name, url in urls.items():
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await running.keda.IsActive(ref(name, endpoints=url))
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            texts.add(info.value.details().replace(name, "NAME"))
        assert len(texts) == 1, texts
        logged = " ".join(r.getMessage() for r in caplog.records)
        assert "could not connect" in logged and "HTTP 404" in logged
    finally:
        await runner.cleanup()
