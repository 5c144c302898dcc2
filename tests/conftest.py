"""Shared test parts: emulated vLLM pods, a service on a hand-moved clock, KEDA's gRPC client."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
from kubernetes_asyncio.client import ApiClient, Configuration

from scaler.commands.serve import RunningApp, start_app
from scaler.config.load import parse_config
from scaler.config.settings import ServiceConfig
from scaler.keda.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.service.service import ScalerService
from scaler.sim.emulation.pod_server import EmulatedVllmPod
from tests.clock import ManualClock
from tests.kube_api import ApiServer

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURES = SHARED / "fixtures" / "metrics"


def make_config(server: Mapping[str, Any] | None = None, **scrape: float) -> ServiceConfig:
    """Loopback, free ports, the given server and scrape settings.

    KEDA is answered by the scaling process itself (``front_process`` false) unless ``server``
    says otherwise: these tests move a manual clock and read the answer at once. The shipped
    default, the front process, is run by the gRPC, TLS, serve, demo and front tests.
    """
    config = ServiceConfig()
    return dataclasses.replace(
        config,
        server=dataclasses.replace(config.server, **{
            "host": "127.0.0.1", "grpc_port": 0, "http_port": 0, "grace_s": 0,
            "front_process": False, **(server or {})}),
        scrape=dataclasses.replace(config.scrape, **scrape),
    )


def config_from(text: str, server: Mapping[str, Any] | None = None) -> ServiceConfig:
    """A config parsed from YAML as a ConfigMap's would be, on loopback with free ports."""
    parsed = parse_config(text)
    return dataclasses.replace(
        parsed,
        server=dataclasses.replace(parsed.server, **{
            "host": "127.0.0.1", "grpc_port": 0, "http_port": 0, "grace_s": 0, **(server or {})}),
        scrape=dataclasses.replace(parsed.scrape, timeout_s=1.0),
    )


@dataclasses.dataclass
class Started:
    """A running app (scrapes triggered by the test) and KEDA's generated client of it."""

    app: RunningApp
    keda: pb_grpc.ExternalScalerStub

    @property
    def service(self) -> ScalerService:
        return self.app.service


StartApp = Callable[..., Awaitable[Started]]


@pytest.fixture
async def start() -> AsyncIterator[StartApp]:
    """Factory: ``await start(config_yaml, front=False, **ScalerService keywords)``."""
    async with contextlib.AsyncExitStack() as stack:
        async def make(config_text: str = "", *, front: bool = False, **service: Any) -> Started:
            config = config_from(config_text, {"front_process": front})
            app = await start_app(config, ScalerService(config, clock=ManualClock(),
                                                        background=False, **service))
            stack.push_async_callback(app.stop)
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}")
            stack.push_async_callback(channel.close)
            return Started(app, pb_grpc.ExternalScalerStub(channel))  # type: ignore[no-untyped-call]

        yield make


async def scrape_all(app: RunningApp) -> None:
    """One scrape round of every workload, then until KEDA's answers reflect it."""
    for workload in app.service.registry:
        await app.service.scrape(workload)
    await app.settle()


@pytest.fixture
async def pods() -> AsyncIterator[Callable[[], Awaitable[EmulatedVllmPod]]]:
    """Factory of started emulated vLLM pods, all stopped at the end."""
    started: list[EmulatedVllmPod] = []

    async def make() -> EmulatedVllmPod:
        pod = EmulatedVllmPod()
        await pod.start()
        started.append(pod)
        return pod

    yield make
    for pod in started:
        await pod.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def app(clock: ManualClock) -> AsyncIterator[RunningApp]:
    """The real gRPC and HTTP servers over a service whose scrapes the test triggers."""
    config = make_config(timeout_s=1.0)
    service = ScalerService(config, clock=clock, background=False)
    running = await start_app(config, service)
    yield running
    await running.stop()


@pytest.fixture
async def keda(app: RunningApp) -> AsyncIterator[pb_grpc.ExternalScalerStub]:
    """A client generated from the same proto, as KEDA's."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        yield pb_grpc.ExternalScalerStub(channel)  # type: ignore[no-untyped-call]


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait for an effect of a background task; the timeout is a guard, not a timing claim."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - the effect has no event to await
            await asyncio.sleep(0.005)


@pytest.fixture
async def server() -> AsyncIterator[ApiServer]:
    """The Kubernetes API of tests/kube_api.py, served by kmock over real HTTP."""
    import kmock

    async with ApiServer() as handler, kmock.Server(handler):
        yield handler


@pytest.fixture
async def api(server: ApiServer) -> AsyncIterator[ApiClient]:
    """The real kubernetes_asyncio client, pointed at ``server``."""
    async with ApiClient(Configuration(host=str(server.url))) as client:
        yield client


@pytest.fixture
async def service() -> AsyncIterator[ScalerService]:
    """The service with default settings on a hand-moved clock; the test triggers scrapes."""
    svc = ScalerService(make_config(), clock=ManualClock(), background=False)
    await svc.start()
    yield svc
    await svc.stop()
