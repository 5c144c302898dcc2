"""A clock the tests move by hand (see ``scaler.clock``)."""

from __future__ import annotations


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start_s: float = 1000.0, wall_offset_s: float = 1.7e9) -> None:
        self._now = start_s
        self._wall_offset = wall_offset_s

    def monotonic(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a monotonic clock cannot go back ({seconds} s)")
        self._now += seconds
