"""A deadline on one awaited call, timed by an injectable ``sleep``.

``asyncio.timeout`` runs on the event loop's clock, so a test with a hand-moved clock could not
make a call outlive its deadline in zero time. ``within`` races the call against ``sleep``:
the production code passes ``asyncio.sleep``; tests pass their clock's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["Sleep", "within"]

Sleep = Callable[[float], Awaitable[None]]
_T = TypeVar("_T")


async def within(call: Awaitable[_T], seconds: float, sleep: Sleep) -> _T:
    """``call``'s result, or TimeoutError once ``sleep(seconds)`` returns first (the call is
    then cancelled: a request not yet sent is never sent)."""
    work = asyncio.ensure_future(call)
    if seconds <= 0:
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        raise TimeoutError(f"no time left ({seconds:g}s)")
    timer = asyncio.ensure_future(sleep(seconds))
    try:
        await asyncio.wait((work, timer), return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        if not work.done():
            work.cancel()
        await asyncio.gather(timer, work, return_exceptions=True)
    if work.cancelled():
        raise TimeoutError(f"no answer within {seconds:.3g}s")
    return work.result()
