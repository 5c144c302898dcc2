"""``scaler front``: KEDA's answers from a process of their own.

One event loop that scrapes a thousand workloads has no room left to answer KEDA quickly:
page parsing and the garbage collector's pauses over the scrape state queue every call behind
them (BENCHMARKS.md, "Load and scale"). The front runs beside ``scaler serve`` (two containers
of one pod, or two processes) and answers KEDA from a cache of the backend's answers:

- an answer younger than ``fresh_s`` is served as it is;
- an older one is served while a single background call refreshes it (stale while
  revalidate), so a slow backend never slows KEDA down;
- one older than ``max_age_s``, or none yet, waits for the backend: the front never serves
  an answer older than that.

Errors are answers too: INVALID_ARGUMENT and UNAVAILABLE come back with the backend's code and
details (KEDA's fallback applies exactly as without the front). A backend that cannot be
reached is UNAVAILABLE. ``StreamIsActive`` is passed through, one backend stream per stream.
Decisions change once per scrape interval (5 s), so ``fresh_s`` of a second adds at most a
second to a change while the backend sees one call per workload per second at most.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import Message

from scaler.proto import externalscaler_pb2 as pb
from scaler.proto import externalscaler_pb2_grpc as pb_grpc

log = logging.getLogger("scaler.front")

CacheKey = tuple[str, bytes]  # (method, the request as deterministic bytes)


class BackendError(Exception):
    """The backend's answer was an error status (kept and served like an answer)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


@dataclass
class _Entry:
    at_s: float
    answer: Message | BackendError
    used_s: float
    refresh: asyncio.Task[None] | None = field(default=None, repr=False)


class AnswerCache:
    """Answers by key, refreshed in the background; see the module docstring."""

    def __init__(self, *, fresh_s: float = 1.0, max_age_s: float = 10.0,
                 idle_s: float = 900.0, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < fresh_s <= max_age_s:
            raise ValueError(f"need 0 < fresh_s <= max_age_s, got {fresh_s}, {max_age_s}")
        self.fresh_s, self.max_age_s, self.idle_s = fresh_s, max_age_s, idle_s
        self._clock = clock
        self._entries: dict[CacheKey, _Entry] = {}
        self._waiting: dict[CacheKey, asyncio.Task[Message | BackendError]] = {}
        self._calls = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: CacheKey,
                  fetch: Callable[[], Awaitable[Message]]) -> Message:
        """The answer for ``key`` (raises BackendError for an error answer)."""
        now = self._clock()
        self._forget_idle(now)
        entry = self._entries.get(key)
        if entry is None or now - entry.at_s > self.max_age_s:
            answer = await self._fetch_once(key, fetch)
        else:
            entry.used_s = now
            if now - entry.at_s > self.fresh_s and entry.refresh is None:
                entry.refresh = asyncio.create_task(self._refresh(key, fetch))
            answer = entry.answer
        if isinstance(answer, BackendError):
            raise answer
        return answer

    async def _fetch_once(self, key: CacheKey,
                          fetch: Callable[[], Awaitable[Message]]) -> Message | BackendError:
        """Call the backend, one call per key however many callers wait for it."""
        task = self._waiting.get(key)
        if task is None:
            task = asyncio.create_task(_answer_of(fetch))
            self._waiting[key] = task
            task.add_done_callback(lambda _: self._waiting.pop(key, None))
        answer = await asyncio.shield(task)
        now = self._clock()
        self._entries[key] = _Entry(now, answer, now)
        return answer

    async def _refresh(self, key: CacheKey, fetch: Callable[[], Awaitable[Message]]) -> None:
        answer = await _answer_of(fetch)
        entry = self._entries.get(key)
        now = self._clock()
        self._entries[key] = _Entry(now, answer, entry.used_s if entry else now)

    def _forget_idle(self, now: float) -> None:
        """Drop answers nobody asked for in ``idle_s`` (checked every 1,000 calls)."""
        self._calls += 1
        if self._calls % 1000:
            return
        for key in [k for k, e in self._entries.items() if now - e.used_s > self.idle_s]:
            del self._entries[key]


async def _answer_of(fetch: Callable[[], Awaitable[Message]]) -> Message | BackendError:
    try:
        return await fetch()
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
        if code not in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAVAILABLE):
            code = grpc.StatusCode.UNAVAILABLE  # a backend timing out or failing: fallback
        return BackendError(code, exc.details() or "the scaler backend did not answer")


class FrontScaler(pb_grpc.ExternalScalerServicer):
    """KEDA's ExternalScaler, answered from the cache of a backend's answers."""

    def __init__(self, backend: pb_grpc.ExternalScalerStub, cache: AnswerCache, *,
                 timeout_s: float = 5.0) -> None:
        self._backend = backend
        self._cache = cache
        self._timeout_s = timeout_s

    async def GetMetricSpec(self, request: pb.ScaledObjectRef,
                            context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return await self._answer("GetMetricSpec", request, context)

    async def GetMetrics(self, request: pb.GetMetricsRequest,
                         context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return await self._answer("GetMetrics", request, context)

    async def IsActive(self, request: pb.ScaledObjectRef,
                       context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return await self._answer("IsActive", request, context)

    async def StreamIsActive(self, request: pb.ScaledObjectRef,
                             context: grpc.aio.ServicerContext[Any, Any]
                             ) -> AsyncIterator[pb.IsActiveResponse]:
        stream = self._backend.StreamIsActive(request)
        try:
            async for message in stream:
                yield message
        except grpc.aio.AioRpcError as exc:
            await context.abort(exc.code(), exc.details() or "the scaler backend stopped")
        finally:
            stream.cancel()

    async def _answer(self, method: str, request: Message,
                      context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        call = getattr(self._backend, method)
        key = (method, request.SerializeToString(deterministic=True))
        try:
            return await self._cache.get(key, lambda: call(request, timeout=self._timeout_s))
        except BackendError as exc:
            await context.abort(exc.code, exc.details)


async def start_front(backend: str, *, host: str, port: int, cache: AnswerCache | None = None
                      ) -> tuple[grpc.aio.Server, int, grpc.aio.Channel]:
    """Serve KEDA on ``host:port`` from ``backend`` (``host:port`` of ``scaler serve``'s gRPC)."""
    channel = grpc.aio.insecure_channel(backend)
    stub = pb_grpc.ExternalScalerStub(channel)  # type: ignore[no-untyped-call]
    server = grpc.aio.server()
    pb_grpc.add_ExternalScalerServicer_to_server(  # type: ignore[no-untyped-call]
        FrontScaler(stub, cache if cache is not None else AnswerCache()), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    log.info("scaler front: KEDA on %s:%d, backend %s", host, bound, backend)
    return server, bound, channel


async def run_front(backend: str, *, host: str, port: int, fresh_s: float,
                    max_age_s: float) -> None:
    server, _, channel = await start_front(
        backend, host=host, port=port, cache=AnswerCache(fresh_s=fresh_s, max_age_s=max_age_s))
    try:
        await server.wait_for_termination()
    finally:
        await server.stop(1.0)
        await channel.close(None)
