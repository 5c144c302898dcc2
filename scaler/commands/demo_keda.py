"""KEDA's side of the external scaler protocol in the demo, through the generated client.

Every poll is GetMetricSpec, GetMetrics and IsActive for one ScaledObject, as KEDA's
operator does; UNAVAILABLE is counted and leaves the replica count alone (KEDA before its
fallback applies). One ``StreamIsActive`` is held in the background (``external-push``) and
its messages are counted. KEDA restarts a ScaledObject's scalers when its trigger metadata
changes, so the stream is re-opened with the new metadata whenever the endpoints change.
"""

from __future__ import annotations

import asyncio
import contextlib

import grpc

from scaler.keda.proto import externalscaler_pb2 as pb
from scaler.keda.proto import externalscaler_pb2_grpc as pb_grpc

__all__ = ["RPC_TIMEOUT_S", "Keda"]

RPC_TIMEOUT_S = 5.0



class Keda:
    """KEDA's side of the external scaler protocol, through the generated client."""

    def __init__(self, stub: pb_grpc.ExternalScalerStub) -> None:
        self.stub = stub
        self.polls = self.unavailable = 0
        self.stream_opens = self.stream_messages = 0
        self.stream_error: str | None = None
        self._stream: asyncio.Task[None] | None = None
        self._stream_metadata: dict[str, str] | None = None

    async def poll(self, ref: pb.ScaledObjectRef) -> tuple[float, float] | None:
        """GetMetricSpec, GetMetrics, IsActive: (metric value, target), None on UNAVAILABLE."""
        self.polls += 1
        spec = (await self.stub.GetMetricSpec(ref, timeout=RPC_TIMEOUT_S)).metricSpecs[0]
        try:
            metrics = await self.stub.GetMetrics(
                pb.GetMetricsRequest(scaledObjectRef=ref, metricName=spec.metricName),
                timeout=RPC_TIMEOUT_S)
            await self.stub.IsActive(ref, timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            self.unavailable += 1
            return None
        return metrics.metricValues[0].metricValueFloat, spec.targetSizeFloat

    async def follow(self, ref: pb.ScaledObjectRef) -> None:
        """Hold a StreamIsActive on ``ref``'s metadata (re-opened when it changes)."""
        metadata = dict(ref.scalerMetadata)
        if metadata == self._stream_metadata:
            return
        await self.close()
        self._stream_metadata = metadata
        self.stream_opens += 1
        self._stream = asyncio.create_task(self._hold(ref), name="demo StreamIsActive")

    async def _hold(self, ref: pb.ScaledObjectRef) -> None:
        try:
            async for _ in self.stub.StreamIsActive(ref):
                self.stream_messages += 1
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                self.stream_error = f"{exc.code().name}: {exc.details()}"

    async def close(self) -> None:
        task, self._stream = self._stream, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


