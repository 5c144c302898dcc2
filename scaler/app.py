"""Runs the whole service: scaler state, gRPC server and HTTP server, until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass

import grpc
from aiohttp import web

from scaler.config import ServiceConfig
from scaler.grpc_server import start_grpc_server, stop_grpc_server
from scaler.http_server import start_http_server
from scaler.service import ScalerService

log = logging.getLogger("scaler.app")


@dataclass
class RunningApp:
    service: ScalerService
    grpc_server: grpc.aio.Server
    grpc_port: int
    http_runner: web.AppRunner
    http_port: int

    async def stop(self) -> None:
        await stop_grpc_server(self.grpc_server, self.service.config.server.grace_s)
        await self.http_runner.cleanup()
        await self.service.stop()


async def start_app(config: ServiceConfig, service: ScalerService | None = None) -> RunningApp:
    """Start everything; ports 0 in the config pick free ones (see the returned ports)."""
    service = service or ScalerService(config)
    await service.start()
    server = config.server
    grpc_server, grpc_port = await start_grpc_server(service, host=server.host,
                                                     port=server.grpc_port)
    http_runner, http_port = await start_http_server(service, host=server.host,
                                                     port=server.http_port)
    return RunningApp(service, grpc_server, grpc_port, http_runner, http_port)


async def serve(config: ServiceConfig) -> None:
    app = await start_app(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    log.info("scaler ready: gRPC :%d, HTTP :%d", app.grpc_port, app.http_port)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await app.stop()
