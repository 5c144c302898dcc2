"""Periodic background work that outlives its own bugs.

A background task that raises ends for good, and nobody hears of it until someone awaits the
task, usually at shutdown: a workload would silently stop being scraped, a node pool planned.
Every periodic chore runs through ``supervise`` instead (a timer in Kopf's sense): an
unexpected exception is logged with its traceback and the count of rounds that failed in a
row, and the next round comes at its usual time. Failures a step expects (a pod that does not
answer, an API error) remain its own business; this is the net under it. Cancelling the task
ends the loop as usual (``CancelledError`` is not an ``Exception``).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from scaler.clock import Clock, SystemClock


class _Done(enum.Enum):
    DONE = "done"


DONE: Final = _Done.DONE
"""What a step returns to end its loop (its work is over, e.g. its workload was dropped)."""

Step = Callable[[], Awaitable[object]]
Sleep = Callable[[float], Awaitable[None]]


async def supervise(what: str, step: Step, every_s: float | Callable[[], float], *,
                    log: logging.Logger, clock: Clock | None = None, sleep: Sleep = asyncio.sleep,
                    sharp: bool = False, initial_delay_s: float = 0.0,
                    phase_s: float = 0.0) -> int:
    """Run ``step`` every ``every_s`` until it returns ``DONE``; return how many rounds failed.

    ``what`` names a round in the log (``"<what> failed; retrying next interval"``), on the
    caller's logger ``log``. ``every_s`` is seconds, or a callable read before each wait (a
    setting that may change while the loop runs). Waits are measured from the end of a step,
    or with ``sharp`` from its start (``every_s`` minus the time the step took, by ``clock``),
    so rounds keep their rhythm however long each takes. ``initial_delay_s`` comes before the
    first step; ``phase_s`` is added to the first wait after it, so loops started together
    (a restart registers every workload at once) do not all run in the same instant.
    ``sleep`` waits; tests give their own to take no real time.
    """
    clock = clock or SystemClock()
    failures = in_a_row = 0
    if initial_delay_s > 0:
        await sleep(initial_delay_s)
    while True:
        started = clock.monotonic() if sharp else 0.0
        try:
            if await step() is DONE:
                return failures
            in_a_row = 0
        except Exception:  # a bug must not end this loop for good: said once a round
            failures += 1
            in_a_row += 1
            more = f" ({in_a_row} rounds in a row)" if in_a_row > 1 else ""
            log.exception("%s failed; retrying next interval%s", what, more)
        interval = every_s() if callable(every_s) else every_s
        elapsed = clock.monotonic() - started if sharp else 0.0
        await sleep(max(0.0, interval - elapsed + phase_s) if sharp else interval + phase_s)
        phase_s = 0.0
