"""The periodic loop every background chore runs in: rhythm, bugs logged and survived, its end.

Time is a hand-moved clock and ``sleep`` only records how long the loop asked to wait (and
moves the clock by that much), so nothing here sleeps for real.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from scaler.service.supervise import DONE, supervise
from tests.clock import ManualClock

log = logging.getLogger("test.supervise")


class Waits:
    """A ``sleep`` that records each wait and moves the clock by it."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)
        self.clock.advance(seconds)


@pytest.fixture
def waits(clock: ManualClock) -> Waits:
    return Waits(clock)


def rounds(*outcomes: object):  # type: ignore[no-untyped-def]
    """A step playing ``outcomes`` in turn (an exception is raised), then DONE."""
    played = iter(outcomes)

    async def step() -> object:
        outcome = next(played, DONE)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return step


async def test_a_step_runs_every_interval_until_it_says_done(waits: Waits) -> None:
    failures = await supervise("chore", rounds(None, None, None), 5.0, log=log, sleep=waits)
    assert failures == 0
    assert waits.seconds == [5.0, 5.0, 5.0]  # after each of the three rounds; none after DONE


async def test_a_bug_is_logged_with_its_traceback_and_the_loop_goes_on(
        waits: Waits, caplog: pytest.LogCaptureFixture) -> None:
    step = rounds(ValueError("one"), ValueError("two"), None, KeyError("three"))
    with caplog.at_level(logging.ERROR, logger=log.name):
        failures = await supervise("workload ns/so: scrape round", step, 5.0, log=log,
                                   sleep=waits)
    assert failures == 3
    assert waits.seconds == [5.0] * 4  # a failed round keeps the rhythm: no faster retry
    assert [r.getMessage() for r in caplog.records] == [
        "workload ns/so: scrape round failed; retrying next interval",
        "workload ns/so: scrape round failed; retrying next interval (2 rounds in a row)",
        "workload ns/so: scrape round failed; retrying next interval",  # a good round between
    ]
    assert all(r.exc_info is not None and r.name == log.name for r in caplog.records)
    assert "ValueError: two" in caplog.text and "KeyError: 'three'" in caplog.text


async def test_sharp_rounds_keep_their_rhythm_from_start_to_start(clock: ManualClock,
                                                                   waits: Waits) -> None:
    took = iter([2.0, 7.0, 1.0])

    async def step() -> object:
        seconds = next(took, None)
        if seconds is None:
            return DONE
        clock.advance(seconds)
        return None

    await supervise("chore", step, 5.0, log=log, clock=clock, sleep=waits, sharp=True,
                    phase_s=1.5)
    # 5 - 2 + the phase (first wait only); an overrun starts the next round at once; 5 - 1.
    assert waits.seconds == [4.5, 0.0, 4.0]


async def test_a_changing_interval_is_read_before_each_wait(waits: Waits) -> None:
    intervals = iter([1.0, 2.0, 3.0])
    await supervise("chore", rounds(None, None, None), lambda: next(intervals), log=log,
                    sleep=waits)
    assert waits.seconds == [1.0, 2.0, 3.0]


async def test_an_initial_delay_comes_before_the_first_round(waits: Waits) -> None:
    ran_after: list[list[float]] = []

    async def step() -> object:
        ran_after.append(list(waits.seconds))
        return DONE if len(ran_after) == 2 else None

    await supervise("chore", step, 30.0, log=log, sleep=waits, initial_delay_s=30.0)
    assert ran_after == [[30.0], [30.0, 30.0]]


async def test_cancelling_ends_the_loop(waits: Waits) -> None:
    with pytest.raises(asyncio.CancelledError):
        await supervise("chore", rounds(None, asyncio.CancelledError()), 5.0, log=log,
                        sleep=waits)
    assert waits.seconds == [5.0]
