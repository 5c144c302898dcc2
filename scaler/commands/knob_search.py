"""The knob search of `scaler bench`: the cheapest setting of a policy meeting the SLO.

Each grid runs from the cheapest-looking setting to the most generous, and SLO attainment
grows (nearly) monotonically along it, so a bisection finds the first setting meeting the
target in log2(len) runs instead of len; every run made is a candidate. The grid's cheap
edge meeting the target (whether or not it is the cheapest run: cost need not fall along the
grid, and on the Azure hour at x10 predictive headroom 0.6 cost 8.1 GPU-hours, 0.65 8.0 and
0.55, past the edge, 7.5), or a grid where nothing meets it, says the grid is too narrow:
it is extended geometrically past that edge (within the knob's meaningful range,
``KNOB_RANGES``; static fleets down to 1 replica) and searched again, and a choice still at
an edge the range would let it pass is flagged (``parameters["knob_at_edge"]``) rather than
passed off as an optimum.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

from scaler.commands.replay import progress_bar
from scaler.model.profile import ReplicaProfile
from scaler.sim.knobs import KNOB_RANGES
from scaler.sim.policy_catalog import SWEEPS, make_policy
from scaler.sim.replay import ReplaySettings, replay
from scaler.sim.results import ReplayResult
from scaler.sim.traces import RateTrace, RequestTrace

EXTENSIONS = 3  # times a grid is extended past an edge before the choice is flagged


class Runner:
    """Replays one policy at one knob value, counting runs ("run k of N") and caching them."""

    def __init__(self, trace: RequestTrace | RateTrace, settings: ReplaySettings,
                 profile: ReplicaProfile, names: Sequence[str]) -> None:
        self.trace, self.settings, self.profile = trace, settings, profile
        self.done = 0
        self.expected = sum(_expected_runs(name) for name in names if name != "oracle")
        self.expected += _expected_runs("oracle")
        self._runs: dict[tuple[str, float], ReplayResult] = {}

    def run(self, name: str, knob: float) -> ReplayResult:
        key = (name, knob)
        if key not in self._runs:
            self.done += 1
            self.expected = max(self.expected, self.done)
            print(f"run {self.done} of {self.expected}: {name} knob={knob:g}", file=sys.stderr)
            policy = make_policy(name, knob, self.trace, self.settings, self.profile)
            self._runs[key] = replay(self.trace, policy, settings=self.settings,
                                     profile=self.profile,
                                     progress=progress_bar(f"{name} knob={knob:g}"))
        return self._runs[key]


def _expected_runs(name: str) -> int:
    size = len(SWEEPS[name]) if name in SWEEPS else 30
    return math.ceil(math.log2(max(size, 2))) + 1


def cheapest_meeting_slo(name: str, runner: Runner, *, peak: int) -> ReplayResult:
    """The cheapest run of the knob's grid reaching the SLO target, else the best SLO.

    Of runs that cost the same, the one nearest the grid's cheap end is kept: when a looser
    setting costs no more, the grid has not yet found where the SLO starts to fail.
    """
    grid = list(_grid(name, peak))
    target = runner.settings.slo_target
    for extension in range(EXTENSIONS + 1):
        runs = _bisect(name, grid, runner, target)
        meeting = [r for r in runs if r.slo_attainment >= target]
        best = (min(meeting, key=lambda r: (r.gpu_hours, grid.index(_knob(r)))) if meeting
                else max(runs, key=lambda r: (r.slo_attainment, -r.gpu_hours)))
        at_edge = (any(_knob(r) == grid[0] for r in meeting) if meeting
                   else _knob(best) == grid[-1])
        wider = _extend(name, grid, cheap=bool(meeting)) if at_edge else grid
        if wider == grid:  # not at an edge, or at the end of the knob's meaningful range
            best.parameters["knob_at_edge"] = False
            return best
        if extension == EXTENSIONS:
            best.parameters["knob_at_edge"] = True
            return best
        grid = wider
    raise AssertionError("unreachable")


def _knob(result: ReplayResult) -> float:
    return float(result.parameters["knob_value"])


def _bisect(name: str, grid: Sequence[float], runner: Runner,
            target: float) -> list[ReplayResult]:
    """The runs a bisection for the first grid value meeting ``target`` makes."""
    made: dict[int, ReplayResult] = {}

    def run(i: int) -> ReplayResult:
        made[i] = runner.run(name, grid[i])
        return made[i]

    lo, hi = 0, len(grid) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if run(mid).slo_attainment >= target:
            hi = mid
        else:
            lo = mid + 1
    run(lo)
    if lo > 0:
        run(lo - 1)  # the cheaper neighbour: attainment is only nearly monotone
    return list(made.values())


def _grid(name: str, peak: int) -> Sequence[float]:
    if name == "static":
        return tuple(float(n) for n in range(max(1, round(peak * 0.5)), round(peak * 2) + 1))
    return SWEEPS[name]


def _extend(name: str, grid: list[float], *, cheap: bool) -> list[float]:
    """``grid`` with three more values past its cheap (or generous) end, geometrically."""
    if name == "static":
        if cheap:
            return [float(n) for n in range(max(1, int(grid[0]) - 3), int(grid[0]))] + grid
        return grid + [grid[-1] + k for k in (1.0, 2.0, 3.0)]
    low, high = KNOB_RANGES[name]
    edge, inner = (grid[0], grid[1]) if cheap else (grid[-1], grid[-2])
    step = edge / inner
    more = [edge * step ** k for k in (1, 2, 3)]
    more = [round(v, 6) for v in more if low <= v <= high]
    return (more[::-1] + grid) if cheap else (grid + more)
