"""`scaler bench`'s knob search: bisection, and grids extended past an edge or flagged."""

from __future__ import annotations

import numpy as np
import pytest

from scaler.commands import knob_search
from scaler.commands.knob_search import Runner, cheapest_meeting_slo
from scaler.config.profiles import default_profile
from scaler.sim import policy_catalog
from scaler.sim.replay import ReplaySettings
from scaler.sim.results import ReplayResult
from scaler.sim.traces import RateTrace

TRACE = RateTrace("steps", 600.0, np.arange(6) * 600.0,
                  np.array([40.0, 120.0, 260.0, 90.0, 60.0, 200.0]), np.full(6, 600.0),
                  np.full(6, 200.0))


def runner() -> Runner:
    return Runner(TRACE, ReplaySettings(), default_profile(), ["reactive-rate"])


def test_a_grid_is_extended_geometrically_within_the_knobs_range() -> None:
    assert knob_search._extend("reactive-rate", [20.0, 10.0], cheap=True) == [
        160.0, 80.0, 40.0, 20.0, 10.0]
    assert knob_search._extend("reactive-rate", [20.0, 10.0], cheap=False) == [
        20.0, 10.0, 5.0, 2.5, 1.25]
    assert knob_search._extend("reactive-kv", [0.8, 0.4], cheap=True) == [0.8, 0.4]
    assert knob_search._extend("static", [3.0, 4.0], cheap=True) == [1.0, 2.0, 3.0, 4.0]


def test_a_choice_at_the_cheap_edge_extends_the_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    # 2 requests/s per replica is far more than the SLO needs: the grid is too narrow.
    monkeypatch.setitem(policy_catalog.SWEEPS, "reactive-rate", (2.0, 1.5))
    best = cheapest_meeting_slo("reactive-rate", runner(), peak=1)
    assert best.slo_attainment >= 0.99
    assert best.parameters["knob_value"] > 2.0
    assert best.parameters["knob_at_edge"] is False


def test_a_choice_still_at_an_edge_is_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(policy_catalog.SWEEPS, "reactive-rate", (1.25, 1.0))
    monkeypatch.setattr(knob_search, "EXTENSIONS", 1)
    best = cheapest_meeting_slo("reactive-rate", runner(), peak=1)
    assert best.parameters["knob_value"] == pytest.approx(1.25 ** 4, rel=1e-4)
    assert best.parameters["knob_at_edge"] is True


class MeasuredRuns(Runner):
    """Answers with the SLO attainment and GPU-hours the Azure hour at x10 measured for
    predictive (session 9): 99.16-99.19 % from headroom 0.5 up, and costs that do not fall
    along the grid (0.6: 8.1 GPU-hours, 0.65: 8.0, below 0.6: 7.5)."""

    def run(self, name: str, knob: float) -> ReplayResult:
        self.done += 1
        gpu = 7.5 if knob < 0.6 else {0.6: 8.1, 0.65: 8.0}.get(knob, 8.2)
        return ReplayResult(name, {"knob_value": knob}, 1.0, 0.9916 if knob >= 0.5 else 0.988,
                            0.1, 1.0, 1.8, gpu, 1.1, 10)


def test_a_cheap_edge_meeting_the_slo_extends_the_grid_even_when_it_costs_more(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The grid's cheapest setting meets the SLO but the next one costs less: the search has
    not found where the SLO fails, and past the edge the cheapest run is cheaper still."""
    monkeypatch.setitem(policy_catalog.SWEEPS, "predictive", (0.6, 0.65, 0.7, 0.75))
    best = cheapest_meeting_slo("predictive", MeasuredRuns(TRACE, ReplaySettings(),
                                                           default_profile(), []), peak=1)
    assert best.gpu_hours == 7.5
    assert best.parameters["knob_value"] < 0.6


def test_the_runner_counts_its_runs_and_runs_each_setting_once(
        capsys: pytest.CaptureFixture[str]) -> None:
    run = runner()
    first = run.run("reactive-rate", 20.0)
    assert run.run("reactive-rate", 20.0) is first
    assert run.done == 1
    assert f"run 1 of {run.expected}: reactive-rate knob=20" in capsys.readouterr().err
