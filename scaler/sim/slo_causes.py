"""Why a replay missed its SLO target: blame each missed request on the fleet's state then.

A headline that says only "53% SLO" leaves the reader to dig through decisions.csv. Each
decision row carries the requests that arrived in its interval and missed the TTFT SLO, and
the fleet's state at that tick, which points at one of three fixes:

- the policy was asking for its replica cap (``desired >= max_replicas``): the cap bound it,
  raise ``--max-replicas``;
- replicas were starting or pending (``ready < desired``): the capacity came too late, the
  lead time (pod and node start-up) is the problem, so scale earlier;
- neither: the fleet was settled below its cap and still too small, so the policy's target
  or headroom asks for too little.

The cause that covers most missed requests is the likely one. Pure: rows in, text out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scaler.sim.results import DecisionRow, ReplayResult

__all__ = ["CAP", "HEADROOM", "LEAD_TIME", "MissCauses", "classify_misses", "slo_verdict"]

HEADROOM, LEAD_TIME, CAP = "headroom", "lead_time", "cap"


@dataclass(frozen=True)
class MissCauses:
    """Missed requests by the fleet's state when they arrived."""

    headroom: float = 0.0  # settled below the cap: the policy asked for too few
    lead_time: float = 0.0  # replicas starting or pending: capacity came too late
    cap: float = 0.0  # the policy asked for its replica cap

    @property
    def total(self) -> float:
        return self.headroom + self.lead_time + self.cap

    @property
    def likely(self) -> str | None:
        """The cause covering most missed requests (None when nothing missed)."""
        if self.total <= 0:
            return None
        shares = {CAP: self.cap, LEAD_TIME: self.lead_time, HEADROOM: self.headroom}
        return max(shares, key=lambda cause: shares[cause])

    def share(self, cause: str) -> float:
        return {CAP: self.cap, LEAD_TIME: self.lead_time, HEADROOM: self.headroom}[cause] / (
            self.total or 1.0)


def classify_misses(rows: Sequence[DecisionRow], *, max_replicas: int | None) -> MissCauses:
    """Sum each row's missed requests under its cause; ``max_replicas`` None: no cap applies."""
    headroom = lead_time = cap = 0.0
    for row in rows:
        if row.slo_misses <= 0:
            continue
        if max_replicas is not None and row.desired_replicas >= max_replicas:
            cap += row.slo_misses
        elif row.ready_replicas < row.desired_replicas:
            lead_time += row.slo_misses
        else:
            headroom += row.slo_misses
    return MissCauses(headroom=headroom, lead_time=lead_time, cap=cap)


def slo_verdict(result: ReplayResult, *, max_replicas: int | None) -> str | None:
    """One line for a run below its SLO target, naming the likely cause; None when met.

    The target is ``parameters["slo_target"]``; ``max_replicas`` is the cap the policy ran
    under (None: none applied, as for a static fleet).
    """
    target = float(result.parameters.get("slo_target", 0.99))
    if not math.isfinite(result.slo_attainment) or result.slo_attainment >= target:
        return None
    cap = max_replicas
    causes = classify_misses(result.decisions, max_replicas=cap)
    head = f"BELOW the {100 * target:g}% SLO target ({result.slo_attainment:.2%})"
    likely = causes.likely
    if likely is None:
        return f"{head}: no decision interval recorded a miss"
    share = f"{causes.share(likely):.0%} of the missed requests came while"
    below = "below its cap and " if cap is not None else ""
    return f"{head}: likely {_EXPLAIN[likely].format(cap=cap, share=share, below=below)}"


_EXPLAIN = {
    CAP: "the replica cap ({cap}) reached: {share} the policy asked for the cap "
         "(raise --max-replicas)",
    LEAD_TIME: "lead time: {share} replicas were starting or pending (scale earlier, "
               "or shorten pod/node start-up)",
    HEADROOM: "too little headroom/target: {share} the fleet was {below}not starting "
              "replicas (it asked for too few: a lower reactive target, a higher predictive "
              "headroom, more static replicas)",
}
