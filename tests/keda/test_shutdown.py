"""Shutdown with KEDA's StreamIsActive streams open, through the generated client as KEDA holds
them, in one process and with the front process (the default).

KEDA (2.20, ``externalPushScaler.Run``) reconnects a stream at its first back-off step (2 s)
only when the stream ended with OK; any other status doubles the wait, up to 60 s. So on
shutdown open streams end with OK at once, and a stop does not wait out ``server.grace_s``
(30 s here: a stop that waited for it would be plain).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from scaler.commands.serve import RunningApp, start_app
from scaler.keda.proto import externalscaler_pb2 as pb
from scaler.keda.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.service.service import ScalerService
from scaler.sim.emulation.engine_state import EngineState
from tests.clock import ManualClock
from tests.conftest import make_config, scrape_all, wait_until

GRACE_S = 30.0


@pytest.fixture(params=[False, True], ids=["one process", "front process"])
async def app(request: pytest.FixtureRequest, clock: ManualClock) -> AsyncIterator[RunningApp]:
    config = make_config({"front_process": request.param, "grace_s": GRACE_S}, timeout_s=1.0)
    running = await start_app(config, ScalerService(config, clock=clock, background=False))
    yield running
    await running.stop()  # again, if the test stopped it: nothing left to do


async def test_open_streams_end_ok_and_the_stop_does_not_wait_the_grace(app, pods) -> None:
    busy, idle = await pods(), await pods()
    busy.engines = [EngineState(waiting=3)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        keda = pb_grpc.ExternalScalerStub(channel)  # type: ignore[no-untyped-call]
        streams = [keda.StreamIsActive(pb.ScaledObjectRef(
            name=name, namespace="llm", scalerMetadata={"endpoints": pod.url,
                                                         "policy": "reactive"}))
                   for name, pod in (("busy", busy), ("idle", idle))]
        first = asyncio.ensure_future(streams[0].read())
        await wait_until(lambda: len(app.service.registry) == 2)
        await scrape_all(app)
        assert (await asyncio.wait_for(first, 5)).result is True  # busy: held, active
        ends = [asyncio.ensure_future(_end(stream)) for stream in streams]  # idle: held, silent

        started = time.perf_counter()
        await app.stop()
        took_s = time.perf_counter() - started

        assert await asyncio.wait_for(asyncio.gather(*ends), 5) == [grpc.StatusCode.OK] * 2
    assert took_s < 1.0, f"the stop took {took_s:.2f} s"


async def _end(stream: grpc.aio.UnaryStreamCall) -> grpc.StatusCode:  # type: ignore[type-arg]
    """Read a stream to its end; how it ended."""
    while await stream.read() is not grpc.aio.EOF:
        pass
    return await stream.code()
