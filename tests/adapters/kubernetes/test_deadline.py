"""``within``: a call's deadline on an injected sleep, so tests move time by hand."""

from __future__ import annotations

import asyncio

import pytest

from adapters.kubernetes.deadline import within


async def test_the_result_when_the_call_ends_first() -> None:
    never = asyncio.Event()

    async def timer(seconds: float) -> None:
        await never.wait()

    async def call() -> int:
        return 7

    assert await within(call(), 5, timer) == 7


async def test_a_timeout_cancels_the_call() -> None:
    reached: list[str] = []
    started, ring = asyncio.Event(), asyncio.Event()

    async def timer(seconds: float) -> None:
        await ring.wait()

    async def call() -> None:
        started.set()
        await asyncio.Event().wait()
        reached.append("sent")  # never: cancelled before

    task = asyncio.create_task(within(call(), 5, timer))
    await started.wait()
    ring.set()
    with pytest.raises(TimeoutError, match=r"^no answer within 5s$"):
        await task
    assert reached == []


async def test_no_time_left_starts_nothing() -> None:
    reached: list[str] = []

    async def call() -> None:
        reached.append("started")

    with pytest.raises(TimeoutError, match=r"^no time left \(0s\)$"):
        await within(call(), 0, asyncio.sleep)
    assert reached == []


async def test_the_call_s_own_error_comes_through() -> None:
    async def call() -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        await within(call(), 5, asyncio.sleep)
