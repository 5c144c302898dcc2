"""KEDA's ``externalscaler.ExternalScaler`` over grpc.aio, answering from any decision source.

The servicer only turns a :class:`Verdict` into KEDA's messages and status codes; where the
verdict comes from is a :class:`Decisions` source: the scaling service in this process
(``scaler.keda.grpc_server``), or the decision table of a separate front process
(``scaler.keda.front.server``) that the scaling process keeps up to date. This module imports
nothing heavier than grpc, so that front process starts in a fraction of a second and stays
small.

Status codes are the ones KEDA understands: INVALID_ARGUMENT for bad metadata (each bad key
named), RESOURCE_EXHAUSTED past an operator limit (the setting named; nothing registered),
UNAVAILABLE while there is no fresh decision (KEDA retries, then applies the ScaledObject's
``fallback``). The server itself refuses messages over ``max_message_bytes`` and holds at most
``max_concurrent_streams`` calls per connection.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import grpc

from scaler.keda import metrics
from scaler.keda.proto import externalscaler_pb2 as pb
from scaler.keda.proto import externalscaler_pb2_grpc as pb_grpc

T = TypeVar("T")
OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
REFUSED = frozenset({INVALID, EXHAUSTED})  # about the call itself: a stream ends with them


@dataclass(frozen=True)
class Verdict:
    """What KEDA gets for one ScaledObject right now.

    ``code`` OK: ``desired_replicas`` and ``active`` hold. UNAVAILABLE: no fresh decision
    (``metric_name`` is still known, so GetMetricSpec can answer). INVALID_ARGUMENT: the
    metadata is wrong, and ``message`` names every bad key. RESOURCE_EXHAUSTED: past an
    operator limit, which ``message`` names.
    """

    metric_name: str
    code: grpc.StatusCode = OK
    message: str = ""
    desired_replicas: int = 0
    active: bool = False

    def to_json(self) -> list[Any]:
        return [self.metric_name, self.code.name, self.message, self.desired_replicas,
                self.active]

    @classmethod
    def from_json(cls, item: list[Any]) -> Verdict:
        name, code, message, desired, active = item
        return cls(str(name), grpc.StatusCode[code], str(message), int(desired), bool(active))


class Decisions(Protocol):
    """Where the servicer's answers come from."""

    async def verdict(self, ref: pb.ScaledObjectRef) -> Verdict:
        """The verdict now; registers the ScaledObject on first contact."""

    def verdicts(self, ref: pb.ScaledObjectRef) -> AsyncIterator[Verdict]:
        """The verdict now, then one after each new decision, for as long as it is read."""

    def record(self, method: str, code: grpc.StatusCode, seconds: float | None) -> None:
        """Count one call (``seconds`` None: a stream, counted when opened)."""


class ExternalScaler(pb_grpc.ExternalScalerServicer):
    def __init__(self, decisions: Decisions) -> None:
        self.decisions = decisions

    async def GetMetricSpec(self, request: pb.ScaledObjectRef,
                            context: grpc.aio.ServicerContext[Any, Any]
                            ) -> pb.GetMetricSpecResponse:
        async def handle() -> pb.GetMetricSpecResponse:
            verdict = await self.decisions.verdict(request)
            if verdict.code == INVALID or not verdict.metric_name:
                raise _Refused(verdict)
            size, size_float = metrics.target_size()
            spec = pb.MetricSpec(metricName=verdict.metric_name, targetSize=size,
                                 targetSizeFloat=size_float)
            return pb.GetMetricSpecResponse(metricSpecs=[spec])

        return await self._call("GetMetricSpec", context, handle)

    async def GetMetrics(self, request: pb.GetMetricsRequest,
                         context: grpc.aio.ServicerContext[Any, Any]) -> pb.GetMetricsResponse:
        async def handle() -> pb.GetMetricsResponse:
            ref = request.scaledObjectRef
            verdict = await self.decisions.verdict(ref)
            if (verdict.code != INVALID and verdict.metric_name and request.metricName
                    and request.metricName != verdict.metric_name):
                raise _Refused(Verdict(verdict.metric_name, INVALID, (
                    f"metricName {request.metricName!r} is not served for "
                    f"{ref.namespace}/{ref.name}; GetMetricSpec returned "
                    f"{verdict.metric_name!r}")))
            if verdict.code != OK:
                raise _Refused(verdict)
            value, value_float = metrics.metric_value(verdict.desired_replicas)
            metric = pb.MetricValue(metricName=verdict.metric_name, metricValue=value,
                                    metricValueFloat=value_float)
            return pb.GetMetricsResponse(metricValues=[metric])

        return await self._call("GetMetrics", context, handle)

    async def IsActive(self, request: pb.ScaledObjectRef,
                       context: grpc.aio.ServicerContext[Any, Any]) -> pb.IsActiveResponse:
        async def handle() -> pb.IsActiveResponse:
            verdict = await self.decisions.verdict(request)
            if verdict.code != OK:
                raise _Refused(verdict)
            return pb.IsActiveResponse(result=verdict.active)

        return await self._call("IsActive", context, handle)

    async def StreamIsActive(self, request: pb.ScaledObjectRef,
                             context: grpc.aio.ServicerContext[Any, Any]
                             ) -> AsyncIterator[pb.IsActiveResponse]:
        """First message once there is a decision, then one per change of activity.

        Bad metadata ends the stream with INVALID_ARGUMENT, a limit with RESOURCE_EXHAUSTED
        (KEDA logs it and reopens); while no decision is fresh, nothing is sent.
        """
        sent: bool | None = None
        last: Verdict | None = None
        async for verdict in self.decisions.verdicts(request):
            if last is None:
                self.decisions.record("StreamIsActive",
                                      verdict.code if verdict.code in REFUSED else OK, None)
            last = verdict
            if verdict.code in REFUSED:
                await context.abort(verdict.code, verdict.message)
            if verdict.code == OK and verdict.active != sent:
                yield pb.IsActiveResponse(result=verdict.active)
                sent = verdict.active
        if last is not None and last.code != OK:  # the source gave up: say why
            await context.abort(last.code, last.message)

    async def _call(self, method: str, context: grpc.aio.ServicerContext[Any, Any],
                    handle: Callable[[], Awaitable[T]]) -> T:
        started = time.perf_counter()
        code = OK
        try:
            return await handle()
        except _Refused as refused:
            code = refused.verdict.code
            await context.abort(code, refused.verdict.message)
        finally:
            self.decisions.record(method, code, time.perf_counter() - started)
        raise AssertionError("unreachable: context.abort raises")


class _Refused(Exception):
    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.message)
        self.verdict = verdict


def server_credentials(*, cert_chain: bytes, private_key: bytes,
                       client_ca: bytes | None) -> grpc.ServerCredentials:
    """TLS credentials; with a client CA, a client certificate signed by it is required."""
    return grpc.ssl_server_credentials(
        [(private_key, cert_chain)], root_certificates=client_ca,
        require_client_auth=client_ca is not None)


def server_options(*, max_message_bytes: int,
                   max_concurrent_streams: int) -> list[tuple[str, int]]:
    """grpc.aio server options: the largest message either way, streams per connection."""
    return [("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_concurrent_streams", max_concurrent_streams)]


async def serve_keda(decisions: Decisions, *, host: str, port: int,
                     credentials: grpc.ServerCredentials | None,
                     options: Sequence[tuple[str, int]] = ()) -> tuple[grpc.aio.Server, int]:
    """Start the ExternalScaler service; returns the server and the bound port (for port 0)."""
    # SO_REUSEPORT off: a second server on a port in use fails instead of sharing its calls.
    server = grpc.aio.server(options=[*options, ("grpc.so_reuseport", 0)])
    pb_grpc.add_ExternalScalerServicer_to_server(ExternalScaler(decisions), server)  # type: ignore[no-untyped-call]
    address = f"{host}:{port}"
    refuse_a_port_in_use(host, port, "gRPC")
    try:
        if credentials is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, credentials)
    except RuntimeError:  # grpcio >= 1.60 raises where older ones returned 0
        bound = 0
    if bound == 0:
        raise OSError(f"cannot listen for gRPC on {address}: is the port in use?")
    await server.start()
    return server, bound


def refuse_a_port_in_use(host: str, port: int, what: str) -> None:
    """OSError naming ``host:port`` when another socket listens there (port 0: any is free).

    Tried with a plain socket first, so the refusal is this one line rather than the gRPC
    core's own log line; grpc's bind is still checked after, for a port taken in between.
    """
    if port == 0:
        return
    try:
        found = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f"cannot listen for {what} on {host}:{port}: {exc.strerror}") from exc
    for family, kind, proto, _, address in found:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do
            try:
                probe.bind(address)
            except OSError as exc:
                raise OSError(f"cannot listen for {what} on {host}:{port}: "
                              f"{exc.strerror or exc}") from exc
