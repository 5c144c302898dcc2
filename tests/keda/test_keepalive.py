"""gRPC keepalive, seen on the wire by a bare HTTP/2 peer, in one process and in the front.

KEDA's grpc-go client sends no pings, so an idle connection (between polls, or holding only a
StreamIsActive for hours) stays open through NATs and load balancers only if the server pings.
The peer here speaks just enough HTTP/2 to be a connection (the preface, SETTINGS and their
acknowledgement) and then sits idle: it must see the server's pings keep coming, past the C
core's default of 2 pings without data, and be closed once it stops answering them.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import pytest

from scaler.commands.serve import RunningApp, start_app
from scaler.service.service import ScalerService
from tests.clock import ManualClock
from tests.conftest import make_config

SETTINGS, PING, GOAWAY = 0x4, 0x6, 0x7
ACK = 0x1


@pytest.fixture(params=[False, True], ids=["one process", "front process"])
async def app(request: pytest.FixtureRequest, clock: ManualClock) -> AsyncIterator[RunningApp]:
    config = make_config({"front_process": request.param, "grpc_keepalive_s": 0.2,
                          "grpc_keepalive_timeout_s": 0.5})
    running = await start_app(config, ScalerService(config, clock=clock, background=False))
    yield running
    await running.stop()


class Http2Peer:
    """One HTTP/2 connection that makes no call; it answers pings while ``answer_pings``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.answer_pings = True
        self.pings = 0

    @classmethod
    async def connect(cls, port: int) -> Http2Peer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(SETTINGS, 0, b""))
        return cls(reader, writer)

    async def until_pinged(self, times: int) -> None:
        while self.pings < times:
            await self.next_frame()

    async def until_closed(self) -> int:
        """Frames read until the server closes the connection; the GOAWAYs among them."""
        goaways = 0
        try:
            while True:
                goaways += await self.next_frame() == GOAWAY
        except asyncio.IncompleteReadError:
            return goaways

    async def next_frame(self) -> int:
        header = await self.reader.readexactly(9)
        length, kind, flags = int.from_bytes(header[:3], "big"), header[3], header[4]
        payload = await self.reader.readexactly(length)
        if kind == SETTINGS and not flags & ACK:
            self.writer.write(frame(SETTINGS, ACK, b""))
        if kind == PING and not flags & ACK:
            self.pings += 1
            if self.answer_pings:
                self.writer.write(frame(PING, ACK, payload))
        await self.writer.drain()
        return kind

    def close(self) -> None:
        self.writer.close()


def frame(kind: int, flags: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + struct.pack(">BBI", kind, flags, 0) + payload


async def test_an_idle_connection_is_pinged_again_and_again(app: RunningApp) -> None:
    peer = await Http2Peer.connect(app.grpc_port)
    try:
        async with asyncio.timeout(10):  # a guard: 4 pings 0.2 s apart take about a second
            await peer.until_pinged(4)
    finally:
        peer.close()


async def test_a_peer_that_stops_answering_pings_is_disconnected(app: RunningApp) -> None:
    peer = await Http2Peer.connect(app.grpc_port)
    try:
        async with asyncio.timeout(10):
            await peer.until_pinged(1)
            peer.answer_pings = False
            assert await peer.until_closed() >= 1  # a GOAWAY, then the end of the connection
    finally:
        peer.close()
