"""``until_set`` (scaler/keda/servicer.py), which every StreamIsActive reads its decisions
through: it ends on the event, and ends cleanly when its reader is cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from scaler.keda.servicer import until_set


class Source:
    """An async generator that yields once, then waits forever; says when it was closed."""

    def __init__(self) -> None:
        self.waiting = asyncio.Event()
        self.closed = False

    async def items(self) -> AsyncIterator[int]:
        try:
            yield 1
            self.waiting.set()
            await asyncio.Event().wait()
            yield 2
        finally:
            self.closed = True


async def read(items: AsyncIterator[int], got: list[int]) -> None:
    async for item in items:
        got.append(item)


async def test_a_cancelled_reader_closes_the_waiting_source_without_error() -> None:
    """KEDA cancelling a stream while it waits for the next decision: the reader ends
    cancelled (closing a still-running generator used to raise RuntimeError in the server)."""
    source, got = Source(), []
    task = asyncio.ensure_future(read(until_set(source.items(), asyncio.Event()), got))
    await source.waiting.wait()
    await asyncio.sleep(0)  # the reader is now in its wait for the next item
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert got == [1]
    assert source.closed


async def test_the_event_ends_the_items_and_closes_the_source() -> None:
    source, got, event = Source(), [], asyncio.Event()
    task = asyncio.ensure_future(read(until_set(source.items(), event), got))
    await source.waiting.wait()
    event.set()
    await asyncio.wait_for(task, 5)
    assert got == [1]
    assert source.closed
