"""Runs the whole service: scaler state, gRPC server and HTTP server, until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import grpc
from aiohttp import web
from kubernetes_asyncio.client import CoordinationV1Api
from prometheus_client import Gauge

from adapters.kubernetes.leader import LeaderElector
from scaler.config.load import load_api_token, load_tls
from scaler.config.settings import ServiceConfig
from scaler.config.tls import TlsMaterial
from scaler.keda.front.link import FrontProcess
from scaler.keda.grpc_server import describe_grpc_security, start_grpc_server, stop_grpc_server
from scaler.keda.http_server import https_context, start_http_server
from scaler.service.config_watch import ConfigWatcher
from scaler.service.node_pools import FixedLeadership, Leadership, NodePoolController
from scaler.service.service import ScalerService
from scaler.service.supervise import supervise

log = logging.getLogger("scaler.app")

FREEZE_EVERY_S = 30.0
FULL_COLLECT_EVERY = 120  # freezes: one full collection an hour


async def keep_long_lived_state_out_of_gc(every_s: float = FREEZE_EVERY_S) -> None:
    """Move what has lived a while out of the garbage collector's reach, every ``every_s``.

    A full collection walks every element of every list it tracks, and each workload's
    forecaster keeps tens of thousands of values in lists: at 1,000 workloads a full
    collection paused the event loop (and every KEDA call) for about a second. Frozen objects
    are skipped by collections (their floats are never tracked anyway); once an hour
    everything is unfrozen and collected, so cyclic garbage that was frozen is not kept.
    """
    rounds = 0

    async def freeze() -> None:
        nonlocal rounds
        rounds += 1
        if rounds % FULL_COLLECT_EVERY == 0:
            gc.unfreeze()
            gc.collect()
        gc.freeze()

    await supervise("gc freeze", freeze, every_s, log=log, initial_delay_s=every_s)


class KedaServer(Protocol):
    """Where KEDA's gRPC calls are answered: this process, or a front process."""

    async def settle(self) -> None:
        """Return once KEDA's calls see every decision made so far."""

    async def stop(self) -> None:
        """Stop answering, letting calls in flight finish within ``server.grace_s``."""


@dataclass
class InProcessServer:
    """The gRPC server in this process: it reads decisions as they are made."""

    server: grpc.aio.Server
    grace_s: float

    async def settle(self) -> None:
        return None

    async def stop(self) -> None:
        await stop_grpc_server(self.server, self.grace_s)


@dataclass
class RunningApp:
    service: ScalerService
    grpc_server: KedaServer
    grpc_port: int
    http_runner: web.AppRunner
    http_port: int
    config_task: asyncio.Task[None] | None = None
    node_tasks: list[asyncio.Task[None]] = field(default_factory=list)
    elector: LeaderElector | None = None
    gc_task: asyncio.Task[None] | None = None

    async def settle(self) -> None:
        """Once this returns, KEDA's calls see every decision made so far (with a front
        process, decisions reach it in batches; in one process they are seen at once)."""
        await self.grpc_server.settle()

    async def stop(self) -> None:
        tasks = [*self.node_tasks, *([self.gc_task] if self.gc_task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.elector is not None:
            await self.elector.stop()
        if self.config_task is not None:
            self.config_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.config_task
        await self.grpc_server.stop()
        await self.http_runner.cleanup()
        await self.service.stop()


async def start_app(config: ServiceConfig, service: ScalerService | None = None, *,
                    config_path: Path | None = None,
                    config_text: str | None = None) -> RunningApp:
    """Start everything; ports 0 in the config pick free ones (see the returned ports).

    With ``config_path`` the file is watched and re-applied when it changes from
    ``config_text``, the text ``config`` was parsed from (read from the file when not given).
    The TLS files and the metrics-api token are read here, once: a renewed certificate or a
    rotated token takes effect at the next start.
    """
    server = config.server
    tls = load_tls(server)  # before anything starts: a bad file stops nothing half-started
    api_token = load_api_token(server)
    https = https_context(server) if server.http_tls else None
    service = service or ScalerService(config)
    async with contextlib.AsyncExitStack() as started:  # a failed start stops what started
        await service.start()
        started.push_async_callback(service.stop)
        grpc_server, grpc_port = await start_keda_server(service, tls)
        started.push_async_callback(grpc_server.stop)
        http_runner, http_port = await start_http_server(
            service, host=server.host, port=server.http_port, ssl_context=https,
            api_token=api_token)
        started.pop_all()
    node_tasks, elector = start_node_pools(service)
    task = None
    if config_path is not None:
        watcher = ConfigWatcher(config_path, service)
        with contextlib.suppress(OSError):  # unreadable now: the watcher says so itself
            watcher.started_from(config_text if config_text is not None else
                                 await asyncio.to_thread(config_path.read_text, "utf-8"))
        task = asyncio.create_task(watcher.run(), name="config watcher")
    gc_task = asyncio.create_task(keep_long_lived_state_out_of_gc(), name="gc freeze")
    return RunningApp(service, grpc_server, grpc_port, http_runner, http_port, task,
                      node_tasks, elector, gc_task)


async def start_keda_server(service: ScalerService, tls: TlsMaterial | None
                            ) -> tuple[KedaServer, int]:
    """KEDA's gRPC server, in this process or (``server.front_process``) in a front one."""
    server = service.config.server
    if not server.front_process:
        grpc_server, port = await start_grpc_server(service, host=server.host,
                                                    port=server.grpc_port, tls=tls)
        return InProcessServer(grpc_server, server.grace_s), port
    front = FrontProcess(service, tls=tls, security=describe_grpc_security(server, tls),
                         log_level=logging.getLevelName(logging.getLogger().level))
    return front, await front.start()


def start_node_pools(service: ScalerService) -> tuple[list[asyncio.Task[None]],
                                                       LeaderElector | None]:
    """The node pool controller, behind a Lease when any pool acts (none configured: none)."""
    settings = service.config.node_pools
    if not settings.pools:
        return [], None
    api = service.kube_api()
    elector = None
    tasks = []
    if settings.lease_namespace and api is not None:
        elector = LeaderElector(CoordinationV1Api(api), settings.lease_namespace,
                                settings.lease_name, f"{socket.gethostname()}-{os.getpid()}")
        tasks.append(asyncio.create_task(elector.run(), name="leader election"))
        leader = Gauge("scaler_leader", "1 while this instance holds the node-actuation Lease.",
                       registry=service.telemetry.registry)
        leader.set_function(lambda: float(elector is not None and elector.is_leader))
    leadership: Leadership = elector if elector is not None else FixedLeadership(leader=False)
    controller = NodePoolController(
        settings.pools, workloads=lambda: service.registry, api=api, leadership=leadership,
        clock=service.clock, registry=service.telemetry.registry,
        interval_s=settings.interval_s)
    tasks.append(asyncio.create_task(controller.run(), name="node pools"))
    return tasks, elector


async def serve(config: ServiceConfig, config_path: Path | None = None,
                config_text: str | None = None) -> None:
    app = await start_app(config, config_path=config_path, config_text=config_text)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    server = config.server
    log.info("scaler ready: gRPC :%d (%s), %s :%d", app.grpc_port, server.tls_mode,
             "HTTPS" if server.http_tls else "HTTP", app.http_port)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await app.stop()
