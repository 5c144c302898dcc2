"""The metrics-api route answers only a caller holding the operator's bearer token.

Anyone who reaches the HTTP port must not set a workload's answer or order nodes: without
``server.http_api_token_file`` the route is off (404 saying how to turn it on); with it, a
request without the token, or with another one, is 401. Neither registers, changes or scrapes
anything, and KEDA's next gRPC answer is what KEDA's own metadata asks for. Real servers on
loopback: the scaler's gRPC and HTTP ports, emulated vLLM pods, kmock for the node pool.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import grpc
import pytest
from prometheus_client import CollectorRegistry

from scaler.commands.serve import RunningApp, start_app
from scaler.config.node_pools import NodePool, NodePoolSettings
from scaler.keda.proto import externalscaler_pb2 as pb
from scaler.keda.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.service.node_pools import FixedLeadership, NodePoolController
from scaler.service.service import ScalerService
from scaler.sim.emulation.engine_state import EngineState
from tests.clock import ManualClock
from tests.conftest import make_config, scrape_all
from tests.kube_api import NS as POOL_NS
from tests.kube_api import ApiServer, add_md, md_replicas, scale_patches

NS, NAME = "llm", "llama-8b"
TOKEN = "0f3a9c1d7e2b4a6c8d0e1f2a3b4c5d6e"
POOL = "h100-metal"

StartApp = Callable[..., Awaitable[RunningApp]]


@pytest.fixture
async def start(clock: ManualClock, tmp_path: Path) -> AsyncIterator[StartApp]:
    """Start the real servers; ``token_file`` text (None: the setting unset), node pools."""
    started: list[RunningApp] = []

    async def make(token_file: str | None = None, *,
                   pools: tuple[NodePool, ...] = ()) -> RunningApp:
        server = {}
        if token_file is not None:
            path = tmp_path / "api-token"
            path.write_text(token_file)
            server["http_api_token_file"] = str(path)
        config = make_config(server, timeout_s=1.0)
        config = dataclasses.replace(config, node_pools=NodePoolSettings(pools=pools))
        running = await start_app(config, ScalerService(config, clock=clock, background=False))
        started.append(running)
        return running

    yield make
    for running in started:
        await running.stop()


def route(app: RunningApp, **query: str) -> str:
    return (f"http://127.0.0.1:{app.http_port}/api/v1/namespaces/{NS}/scaledobjects/{NAME}"
            f"?{urlencode(query)}")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# Who is refused: the route off (no token configured), and with a token configured a caller
# sending none, another token, the token under another scheme, or the token with a suffix.
REFUSED = [
    pytest.param(None, {}, 404, id="route off"),
    pytest.param(TOKEN, {}, 401, id="no token"),
    pytest.param(TOKEN, bearer("not-the-token"), 401, id="wrong token"),
    pytest.param(TOKEN, {"Authorization": f"Basic {TOKEN}"}, 401, id="another scheme"),
    pytest.param(TOKEN, bearer(TOKEN + "x"), 401, id="token and more"),
    pytest.param(TOKEN, bearer(TOKEN[:-1]), 401, id="a prefix of the token"),
]


async def get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, object], str]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        return resp.status, await resp.json(), resp.headers.get("WWW-Authenticate", "")


def keda_ref(*urls: str, **extra: str) -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name=NAME, namespace=NS,
                              scalerMetadata={"endpoints": ",".join(urls), **extra})


async def keda_value(app: RunningApp, request: pb.ScaledObjectRef, *,
                     spec_only: bool = False) -> float | None:
    """One KEDA poll through the generated client: GetMetricSpec, then GetMetrics."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        keda = pb_grpc.ExternalScalerStub(channel)  # type: ignore[no-untyped-call]
        spec = (await keda.GetMetricSpec(request)).metricSpecs[0]
        if spec_only:
            return None
        metrics = await keda.GetMetrics(
            pb.GetMetricsRequest(scaledObjectRef=request, metricName=spec.metricName))
    return float(metrics.metricValues[0].metricValueFloat)


@pytest.mark.parametrize(("token_file", "headers", "status"), REFUSED)
async def test_http_hijack_registers_nothing_and_keda_keeps_its_answer(
        start, pods, token_file, headers, status):
    app = await start(token_file)
    served, planted = await pods(), await pods()
    served.engines = [EngineState(waiting=0, running=2, kv_cache_usage=0.1)]

    # Before KEDA ever asked: the caller cannot register a workload nor make us scrape.
    code, body, challenge = await get(
        route(app, endpoints=planted.url, policy="reactive", minReplicas="40",
              maxReplicas="50"), headers)
    assert code == status, body
    await scrape_all(app)
    assert len(app.service.registry) == 0
    assert planted.requests_served == 0

    # KEDA's trigger asks for 1 replica at this load; a hijack GET must not change that.
    request = keda_ref(served.url, policy="reactive", minReplicas="1", maxReplicas="50")
    await keda_value(app, request, spec_only=True)  # registers
    await scrape_all(app)
    assert await keda_value(app, request) == 1
    code, body, challenge = await get(
        route(app, endpoints=served.url, policy="reactive", minReplicas="40",
              maxReplicas="50"), headers)
    assert code == status, body
    await scrape_all(app)
    assert await keda_value(app, request) == 1
    (workload,) = app.service.registry
    assert workload.spec.bounds.min_replicas == 1
    assert planted.requests_served == 0
    if status == 401:
        assert challenge.startswith("Bearer")


@pytest.mark.parametrize(("token_file", "headers", "status"), REFUSED)
async def test_node_ask_over_http_never_reaches_the_node_pool(
        start, pods, server: ApiServer, api, token_file, headers, status):
    add_md(server, 2)
    app = await start(token_file, pools=(NodePool(POOL),))
    pod = await pods()
    pod.engines = [EngineState(running=3)]
    controller = NodePoolController(
        [NodePool(POOL, "machinedeployment", POOL_NS, "pool", cooldown_up_s=0)],
        workloads=lambda: app.service.registry, api=api, leadership=FixedLeadership(True),
        clock=app.service.clock, registry=CollectorRegistry())

    code, body, _ = await get(
        route(app, endpoints=pod.url, nodePool=POOL, minNodes="40", gpusPerNode="1"), headers)
    assert code == status, body
    await scrape_all(app)
    await controller.round()

    assert len(app.service.registry) == 0
    assert pod.requests_served == 0
    assert md_replicas(server) == 2
    assert not scale_patches(server)


async def test_route_off_says_how_to_turn_it_on(start):
    app = await start()
    code, body, _ = await get(route(app, endpoints="http://127.0.0.2:8000/metrics"), {})
    assert code == 404
    assert body["error"] == "metrics_api_off"
    assert "server.http_api_token_file" in body["message"]
    assert "authMode: bearer" in body["message"]


async def test_a_wrong_token_is_401_with_a_bearer_challenge(start):
    app = await start(TOKEN)
    code, body, challenge = await get(route(app, endpoints="http://127.0.0.2:8000/metrics"),
                                      bearer("guess"))
    assert code == 401
    assert body["error"] == "unauthorized"
    assert "Bearer" in body["message"]
    assert challenge.startswith("Bearer")
    assert TOKEN not in str(body)


@pytest.mark.parametrize("file_text", [TOKEN, f"  {TOKEN}\n", f"\n\t{TOKEN} \r\n\n"],
                         ids=["bare", "trailing newline", "whitespace around"])
async def test_the_right_token_answers_as_before(start, pods, file_text):
    app = await start(file_text)
    pod = await pods()
    pod.engines = [EngineState(waiting=15, running=30, kv_cache_usage=0.5)]
    url = route(app, endpoints=pod.url, policy="reactive")
    code, body, _ = await get(url, bearer(TOKEN))
    assert code == 503 and body["error"] == "unavailable"  # registered, nothing scraped yet
    await scrape_all(app)
    code, body, _ = await get(url, bearer(TOKEN))
    assert code == 200, body
    assert body["desiredReplicas"] == 3  # 15 waiting / 5 per replica
    code, body, _ = await get(url, {"Authorization": f"bearer  {TOKEN} "})  # scheme: any case
    assert code == 200, body


@pytest.mark.parametrize("token_file", [None, TOKEN], ids=["route off", "token set"])
async def test_metrics_and_probes_stay_open(start, token_file):
    app = await start(token_file)
    async with aiohttp.ClientSession() as http:
        for path in ("/metrics", "/healthz", "/readyz"):
            async with http.get(f"http://127.0.0.1:{app.http_port}{path}") as resp:
                assert resp.status == 200, path


async def test_refused_requests_are_counted_by_status(start):
    app = await start(TOKEN)
    await get(route(app, endpoints="http://127.0.0.2:8000/metrics"), {})
    assert app.service.telemetry.registry.get_sample_value(
        "scaler_http_decision_requests_total", {"status": "401"}) == 1


async def test_an_authorized_http_call_changing_metadata_is_logged_and_counted(
        start, pods, caplog):
    caplog.set_level(logging.INFO, logger="scaler.service")
    app = await start(TOKEN)
    pod = await pods()
    await keda_value(app, keda_ref(pod.url, minReplicas="1"), spec_only=True)
    code, body, _ = await get(route(app, endpoints=pod.url, minReplicas="3"), bearer(TOKEN))
    assert code == 503, body  # registered by KEDA, not yet scraped; the spec is the caller's
    [line] = [r.getMessage() for r in caplog.records if "metadata changed" in r.getMessage()]
    assert "minReplicas" in line and "endpoints" not in line
    assert app.service.telemetry.registry.get_sample_value(
        "scaler_workload_spec_changes_total", {"namespace": NS, "scaledobject": NAME}) == 1
