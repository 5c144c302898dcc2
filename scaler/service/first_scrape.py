"""A new workload's first answer waits for its first scrape round, bounded by scrape.timeout_s.

A workload is registered by KEDA's first call about it, and its first scrape round starts at
once; answered right away, that call (and every call after a restart, which registers every
workload anew) would be UNAVAILABLE: a failed poll for KEDA, a Warning event on the
ScaledObject and a step toward its fallback, for data milliseconds away. So a call about a
workload whose first round is still running waits for that round, at most
``scrape.timeout_s`` (one page's timeout: a pod that does not answer costs the caller no more
than it costs the round), then answers from whatever the round left, UNAVAILABLE included.
A service without background rounds (tests that scrape by hand) has nothing to wait for.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from scaler.service.workloads import WorkloadKey

if TYPE_CHECKING:
    from scaler.service.service import ScalerService


def first_round_running(service: ScalerService, key: WorkloadKey | None) -> bool:
    """Whether the workload's first scrape round is still to finish (a call would wait)."""
    runner = None if key is None else service.runners.get(key)
    return (service.background and runner is not None and not runner.first_round.is_set()
            and runner.workload.scrapes_completed == 0)


async def first_round(service: ScalerService, key: WorkloadKey | None) -> None:
    """Return once the workload's first scrape round is over, or after scrape.timeout_s."""
    if not first_round_running(service, key):
        return
    assert key is not None
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(service.runners[key].first_round.wait(),
                               service.config.scrape.timeout_s)
