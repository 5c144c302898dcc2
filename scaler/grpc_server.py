"""KEDA's ``externalscaler.ExternalScaler`` over grpc.aio.

Every RPC resolves the workload from its ScaledObjectRef (registering it on
first contact) and answers from the service's memory. Errors map to status
codes KEDA understands: INVALID_ARGUMENT for bad metadata (each bad key named),
UNAVAILABLE while there is no fresh decision (KEDA retries, then applies the
ScaledObject's ``fallback``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from scaler import keda
from scaler.config import ServerSettings, TlsMaterial
from scaler.metadata import MetadataError
from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.service import ScalerService, Unavailable
from scaler.workloads import Workload

log = logging.getLogger("scaler.grpc")

T = TypeVar("T")


class ExternalScaler(pb_grpc.ExternalScalerServicer):
    def __init__(self, service: ScalerService) -> None:
        self.service = service

    async def GetMetricSpec(self, request: pb.ScaledObjectRef,
                            context: grpc.aio.ServicerContext[Any, Any]
                            ) -> pb.GetMetricSpecResponse:
        async def handle() -> pb.GetMetricSpecResponse:
            workload = self._resolve(request)
            size, size_float = keda.target_size()
            spec = pb.MetricSpec(metricName=workload.spec.metric_name, targetSize=size,
                                 targetSizeFloat=size_float)
            return pb.GetMetricSpecResponse(metricSpecs=[spec])

        return await self._call("GetMetricSpec", context, handle)

    async def GetMetrics(self, request: pb.GetMetricsRequest,
                         context: grpc.aio.ServicerContext[Any, Any]) -> pb.GetMetricsResponse:
        async def handle() -> pb.GetMetricsResponse:
            workload = self._resolve(request.scaledObjectRef)
            if request.metricName and request.metricName != workload.spec.metric_name:
                raise MetadataError([
                    f"metricName {request.metricName!r} is not served for "
                    f"{workload.key.namespace}/{workload.key.name}; GetMetricSpec returned "
                    f"{workload.spec.metric_name!r}"
                ])
            answer = self.service.answer(workload)
            value, value_float = keda.metric_value(answer.decision.desired_replicas)
            metric = pb.MetricValue(metricName=workload.spec.metric_name, metricValue=value,
                                    metricValueFloat=value_float)
            return pb.GetMetricsResponse(metricValues=[metric])

        return await self._call("GetMetrics", context, handle)

    async def IsActive(self, request: pb.ScaledObjectRef,
                       context: grpc.aio.ServicerContext[Any, Any]) -> pb.IsActiveResponse:
        async def handle() -> pb.IsActiveResponse:
            answer = self.service.answer(self._resolve(request))
            return pb.IsActiveResponse(result=answer.decision.active)

        return await self._call("IsActive", context, handle)

    async def StreamIsActive(self, request: pb.ScaledObjectRef,
                             context: grpc.aio.ServicerContext[Any, Any]
                             ) -> AsyncIterator[pb.IsActiveResponse]:
        """First message once there is a decision, then one per change of activity."""
        try:
            workload = self._resolve(request)
        except MetadataError as exc:
            self._count("StreamIsActive", grpc.StatusCode.INVALID_ARGUMENT)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            return
        self._count("StreamIsActive", grpc.StatusCode.OK)
        sent: bool | None = None
        while True:
            changed = self.service.change_event(workload)
            active = self._current_activity(workload)
            if active is not None and active != sent:
                yield pb.IsActiveResponse(result=active)
                sent = active
            await changed.wait()
            workload = self.service.keep_alive(workload, request.scalerMetadata)

    def _current_activity(self, workload: Workload) -> bool | None:
        try:
            return self.service.answer(workload).decision.active
        except Unavailable:
            return None

    def _resolve(self, ref: pb.ScaledObjectRef) -> Workload:
        return self.service.resolve(ref.namespace, ref.name, ref.scalerMetadata)

    async def _call(self, method: str, context: grpc.aio.ServicerContext[Any, Any],
                    handle: Callable[[], Awaitable[T]]) -> T:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return await handle()
        except MetadataError as exc:
            code = grpc.StatusCode.INVALID_ARGUMENT
            await context.abort(code, str(exc))
        except Unavailable as exc:
            code = grpc.StatusCode.UNAVAILABLE
            await context.abort(code, str(exc))
        finally:
            self._count(method, code)
            self.service.telemetry.rpc_duration.labels(method).observe(
                time.perf_counter() - started)
        raise AssertionError("unreachable: context.abort raises")

    def _count(self, method: str, code: grpc.StatusCode) -> None:
        self.service.telemetry.rpc_requests.labels(method, code.name).inc()


async def start_grpc_server(service: ScalerService, *, host: str, port: int,
                            tls: TlsMaterial | None = None) -> tuple[grpc.aio.Server, int]:
    """Start serving; returns the server and the bound port (useful with port 0).

    With ``tls`` the port speaks TLS as KEDA dials it when the trigger has ``caCert`` (or
    ``enableTLS``), and with a client CA it also requires KEDA's ``tlsClientCert``.
    """
    server = grpc.aio.server()
    pb_grpc.add_ExternalScalerServicer_to_server(ExternalScaler(service), server)  # type: ignore[no-untyped-call]
    address = f"{host}:{port}"
    if tls is None:
        bound = server.add_insecure_port(address)
    else:
        bound = server.add_secure_port(address, server_credentials(tls))
    if bound == 0:
        raise OSError(f"cannot listen for gRPC on {address}: is the port in use?")
    await server.start()
    log.info("gRPC ExternalScaler listening on %s:%d (%s)", host, bound,
             describe_grpc_security(service.config.server, tls))
    return server, bound


def server_credentials(tls: TlsMaterial) -> grpc.ServerCredentials:
    """TLS credentials; with a client CA, a client certificate signed by it is required."""
    return grpc.ssl_server_credentials(
        [(tls.private_key, tls.cert_chain)], root_certificates=tls.client_ca,
        require_client_auth=tls.client_ca is not None)


def describe_grpc_security(server: ServerSettings, tls: TlsMaterial | None) -> str:
    """The mode and the files' paths for the start-up log: never their contents."""
    if tls is None:
        return "plaintext: set server.tls_cert_file and server.tls_key_file for TLS"
    text = f"{server.tls_mode}, certificate {server.tls_cert_file}"
    if tls.client_ca is not None:
        text += f", client certificates required, signed by {server.tls_client_ca_file}"
    return text


async def stop_grpc_server(server: grpc.aio.Server, grace_s: float) -> None:
    await asyncio.shield(server.stop(grace_s))
