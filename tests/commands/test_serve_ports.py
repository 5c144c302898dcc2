"""`scaler serve` on a port it cannot have: one line naming the port, exit 1, nothing left.

Real processes and real sockets: the port is held by a gRPC server (with grpc's default
SO_REUSEPORT, as a second `scaler serve` used to have) or a plain listening socket.
"""

from __future__ import annotations

import asyncio
import socket
import sys

import grpc
import pytest

from scaler.commands.serve import start_app
from scaler.service.service import ScalerService
from tests.conftest import make_config


async def run_serve(*flags: str) -> tuple[int, list[str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scaler", "serve", "--host", "127.0.0.1", "--log-level", "ERROR",
        *flags, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert out == b""
    return int(proc.returncode or 0), err.decode().splitlines()


async def held_by_grpc() -> tuple[grpc.aio.Server, int]:
    """A port held by a plain grpc.aio server: grpc's defaults, SO_REUSEPORT on."""
    other = grpc.aio.server()
    port = other.add_insecure_port("127.0.0.1:0")
    await other.start()
    return other, port


@pytest.mark.parametrize("front", ["true", "false"], ids=["front process", "one process"])
async def test_a_grpc_port_held_by_another_server_is_refused_in_one_line(front, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"server:\n  front_process: {front}\n")
    other, port = await held_by_grpc()
    try:
        code, err = await run_serve("--config", str(config), "--grpc-port", str(port),
                                    "--http-port", "0")
    finally:
        await other.stop(0)
    assert code == 1, err
    assert len(err) == 1 and f"127.0.0.1:{port}" in err[0] and "gRPC" in err[0], err


async def test_an_http_port_in_use_is_refused_in_one_line_and_nothing_is_left_open():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, err = await run_serve("--grpc-port", "0", "--http-port", str(port))
    assert code == 1, err
    assert len(err) == 1 and f"127.0.0.1:{port}" in err[0] and "HTTP" in err[0], err


async def test_a_failed_start_stops_what_had_started():
    """In process: the HTTP port taken, the gRPC server and the service are stopped again
    (the gRPC port is free for the next start, no client session is left open)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        service = ScalerService(make_config({"http_port": holder.getsockname()[1]}))
        with pytest.raises(OSError, match=r"cannot listen for HTTP on 127\.0\.0\.1:"):
            await start_app(service.config, service)
    assert service._session is None or service._session.closed
    again = await start_app(make_config(), ScalerService(make_config()))
    await again.stop()


async def test_port_0_binds_a_free_port_and_says_which():
    app = await start_app(make_config(), ScalerService(make_config()))
    try:
        assert app.grpc_port > 0 and app.http_port > 0
    finally:
        await app.stop()


async def test_the_grpc_server_does_not_share_its_port():
    """With SO_REUSEPORT off on ours, even a server that asks to share cannot bind it."""
    app = await start_app(make_config(), ScalerService(make_config()))
    try:
        other = grpc.aio.server()  # grpc's default: SO_REUSEPORT on
        with pytest.raises(RuntimeError):
            other.add_insecure_port(f"127.0.0.1:{app.grpc_port}")
    finally:
        await app.stop()
