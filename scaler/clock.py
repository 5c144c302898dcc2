"""Time sources.

Every component that reasons about age (staleness, idle expiry, rates) takes a
``Clock`` (a parameter named ``clock``) so tests can move time by hand instead of
sleeping (``tests/clock.py``). ``monotonic`` is for durations; ``wall`` is only for
what people read (logs, JSON timestamps).
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes backwards."""
        ...

    def wall(self) -> float:
        """Seconds since the Unix epoch."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()
