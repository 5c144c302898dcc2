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

import asyncio
import contextlib
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
    def __init__(self, decisions: Decisions, closing: asyncio.Event | None = None) -> None:
        """``closing``: once set, open streams end with OK (see ``stop_keda``)."""
        self.decisions = decisions
        self.closing = closing or asyncio.Event()

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
                    and request.metricName.lower() != verdict.metric_name.lower()):
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
        """``true`` each time the workload turns active (at once if it is when opened).

        Only ``true`` is pushed: KEDA up to 2.17 acted on a pushed ``false`` for this trigger
        alone, deactivating a ScaledObject its other triggers kept active; from 2.18 it ignores
        it. KEDA learns of inactivity from ``IsActive`` at each poll, as before.
        Bad metadata ends the stream with INVALID_ARGUMENT, a limit with RESOURCE_EXHAUSTED
        (KEDA logs it and reopens); while no decision is fresh, nothing is sent. When the
        server stops, the stream ends with OK, the only end after which KEDA reconnects at
        its first back-off step (2 s) rather than the next doubling one (up to 60 s).
        """
        active = False
        last: Verdict | None = None
        async for verdict in until_set(self.decisions.verdicts(request), self.closing):
            if last is None:
                self.decisions.record("StreamIsActive",
                                      verdict.code if verdict.code in REFUSED else OK, None)
            last = verdict
            if verdict.code in REFUSED:
                await context.abort(verdict.code, verdict.message)
            if verdict.code == OK and verdict.active and not active:
                yield pb.IsActiveResponse(result=True)
            if verdict.code == OK:
                active = verdict.active
        if last is not None and last.code != OK and not self.closing.is_set():
            await context.abort(last.code, last.message)  # the source gave up: say why

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


async def until_set(items: AsyncIterator[T], event: asyncio.Event) -> AsyncIterator[T]:
    """``items`` until they end or ``event`` is set, whichever comes first (then the source is
    closed: a stream's wait for the next decision is cancelled, nothing else).

    The same holds when the caller is cancelled (KEDA cancels the RPC, e.g. when it restarts a
    ScaledObject's scalers): the wait for the next item is cancelled and finished before the
    source is closed, since a generator cannot be closed while it is still running.
    """
    stopped = asyncio.ensure_future(event.wait())
    following: asyncio.Future[T] | None = None
    try:
        while not event.is_set():
            following = asyncio.ensure_future(anext(items))
            await asyncio.wait((following, stopped), return_when=asyncio.FIRST_COMPLETED)
            if not following.done():
                return
            try:
                item = following.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        stopped.cancel()
        if following is not None and not following.done():
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await following
        await _close(items)


async def _close(items: AsyncIterator[T]) -> None:
    aclose = getattr(items, "aclose", None)
    if aclose is not None:
        await aclose()


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


def server_options(*, max_message_bytes: int, max_concurrent_streams: int,
                   keepalive_s: float = 30.0,
                   keepalive_timeout_s: float = 10.0) -> list[tuple[str, int]]:
    """grpc.aio server options: the largest message either way, streams per connection, and
    keepalive pings for connections that carry nothing but a held stream for hours.

    The server pings (``keepalive_s``), with or without calls in flight, and without the
    C core's default limit of 2 pings between data frames (an idle stream sends none, so
    pings would stop after two). grpcio 1.85 enforces an unanswered ping's deadline through
    ``grpc.http2.ping_timeout_ms`` (default a minute), not ``grpc.keepalive_timeout_ms``
    alone: both are set. KEDA's grpc-go client sends no pings of its own and does not police
    the server's; a client that does ping is accepted down to every 10 s.
    """
    return [("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_concurrent_streams", max_concurrent_streams),
            ("grpc.keepalive_time_ms", round(keepalive_s * 1000)),
            ("grpc.keepalive_timeout_ms", round(keepalive_timeout_s * 1000)),
            ("grpc.http2.ping_timeout_ms", round(keepalive_timeout_s * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000)]


async def serve_keda(decisions: Decisions, *, host: str, port: int,
                     credentials: grpc.ServerCredentials | None,
                     options: Sequence[tuple[str, int]] = (),
                     closing: asyncio.Event | None = None) -> tuple[grpc.aio.Server, int]:
    """Start the ExternalScaler service; returns the server and the bound port (for port 0).

    Stop it with ``stop_keda`` and the same ``closing`` event, so open streams end with OK.
    """
    # SO_REUSEPORT off: a second server on a port in use fails instead of sharing its calls.
    server = grpc.aio.server(options=[*options, ("grpc.so_reuseport", 0)])
    pb_grpc.add_ExternalScalerServicer_to_server(ExternalScaler(decisions, closing), server)  # type: ignore[no-untyped-call]
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


async def stop_keda(server: grpc.aio.Server, closing: asyncio.Event, grace_s: float) -> None:
    """End every open StreamIsActive with OK, then stop; calls in flight get ``grace_s``.

    Held streams would otherwise be cut when the grace ends, with UNAVAILABLE: KEDA then
    waits its doubled back-off (up to 60 s) before it reconnects to the new instance, where
    after OK it waits 2 s. Streams end at once, so a stop takes as long as unary calls still
    in flight (milliseconds), not ``grace_s``.
    """
    closing.set()
    await server.stop(grace_s)


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
