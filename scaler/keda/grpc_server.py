"""The KEDA gRPC server answering from the scaling service in this process.

Every RPC resolves the workload from its ScaledObjectRef (registering it on first contact)
and answers from the service's memory; ``scaler.keda.servicer`` turns that into KEDA's
messages and status codes.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator

import grpc

from scaler.config.settings import ServerSettings
from scaler.config.tls import TlsMaterial
from scaler.keda.proto import externalscaler_pb2 as pb
from scaler.keda.servicer import (
    Verdict,
    serve_keda,
    server_credentials,
    server_options,
    stop_keda,
)
from scaler.keda.verdict import REFUSALS, refused, verdict_of
from scaler.service.first_scrape import first_round
from scaler.service.service import ScalerService, resolve_naming_hosts
from scaler.service.workloads import Workload

log = logging.getLogger("scaler.grpc")
# Each started server's event that ends its open streams (``stop_grpc_server`` sets it).
_closing: weakref.WeakKeyDictionary[grpc.aio.Server, asyncio.Event] = weakref.WeakKeyDictionary()


class ServiceDecisions:
    """The service's decisions as verdicts, computed at each call."""

    def __init__(self, service: ScalerService) -> None:
        self.service = service

    async def verdict(self, ref: pb.ScaledObjectRef) -> Verdict:
        """The verdict now; for a new workload, once its first scrape round is over (or
        after scrape.timeout_s: ``scaler.service.first_scrape``)."""
        try:
            workload = await self._resolve(ref)
        except REFUSALS as exc:
            return refused(exc)
        await first_round(self.service, workload.key)
        return self._verdict_of(workload)

    async def verdicts(self, ref: pb.ScaledObjectRef) -> AsyncIterator[Verdict]:
        try:
            workload = await self._resolve(ref)
            while True:
                changed = self.service.change_event(workload)
                yield self._verdict_of(workload)
                await changed.wait()
                workload = self.service.keep_alive(workload, ref.scalerMetadata)
        except REFUSALS as exc:  # at the start, or registering a dropped workload again
            yield refused(exc)

    def record(self, method: str, code: grpc.StatusCode, seconds: float | None) -> None:
        telemetry = self.service.telemetry
        telemetry.rpc_requests.labels(method, code.name).inc()
        if seconds is not None:
            telemetry.rpc_duration.labels(method).observe(seconds)

    async def _resolve(self, ref: pb.ScaledObjectRef) -> Workload:
        return await resolve_naming_hosts(self.service, ref.namespace, ref.name,
                                          ref.scalerMetadata)

    def _verdict_of(self, workload: Workload) -> Verdict:
        return verdict_of(self.service, workload)[0]


async def start_grpc_server(service: ScalerService, *, host: str, port: int,
                            tls: TlsMaterial | None = None) -> tuple[grpc.aio.Server, int]:
    """Start serving; returns the server and the bound port (useful with port 0).

    With ``tls`` the port speaks TLS as KEDA dials it when the trigger has ``caCert`` (or
    ``enableTLS``), and with a client CA it also requires KEDA's ``tlsClientCert``.
    """
    settings = service.config.server
    closing = asyncio.Event()
    server, bound = await serve_keda(
        ServiceDecisions(service), host=host, port=port, credentials=credentials(tls),
        options=server_options(max_message_bytes=settings.grpc_max_message_bytes,
                               max_concurrent_streams=settings.grpc_max_concurrent_streams,
                               keepalive_s=settings.grpc_keepalive_s,
                               keepalive_timeout_s=settings.grpc_keepalive_timeout_s),
        closing=closing)
    _closing[server] = closing
    log.info("gRPC ExternalScaler listening on %s:%d (%s)", host, bound,
             describe_grpc_security(service.config.server, tls))
    return server, bound


def credentials(tls: TlsMaterial | None) -> grpc.ServerCredentials | None:
    if tls is None:
        return None
    return server_credentials(cert_chain=tls.cert_chain, private_key=tls.private_key,
                              client_ca=tls.client_ca)


def describe_grpc_security(server: ServerSettings, tls: TlsMaterial | None) -> str:
    """The mode and the files' paths for the start-up log: never their contents."""
    if tls is None:
        return "plaintext: set server.tls_cert_file and server.tls_key_file for TLS"
    text = f"{server.tls_mode}, certificate {server.tls_cert_file}"
    if tls.client_ca is not None:
        text += f", client certificates required, signed by {server.tls_client_ca_file}"
    return text


async def stop_grpc_server(server: grpc.aio.Server, grace_s: float) -> None:
    """Open streams end with OK at once, then calls in flight get ``grace_s`` (``stop_keda``)."""
    closing = _closing.pop(server, None) or asyncio.Event()
    await asyncio.shield(stop_keda(server, closing, grace_s))
