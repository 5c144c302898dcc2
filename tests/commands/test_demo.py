"""`scaler demo` end to end: both ScaledObjects against the live service, on its sim clock."""

from __future__ import annotations

import itertools
import json
import math

from scaler.commands.demo import run_demo
from scaler.commands.demo_loop import POD_STARTUP_S, DemoLog
from scaler.commands.demo_trace import RAMP_AT_S, RAMP_S, START_S


async def test_demo_plays_both_sides_through_keda_and_never_thrashes_on_flat_demand(tmp_path):
    lines: list[str] = []
    log = DemoLog()
    run = await run_demo(wall_s=5, speed=240, seed=0, out=tmp_path, echo=lines.append,
                         log=log, flat=True)

    # The forecaster learnt the history through the service's own warm start (Prometheus).
    assert log.warm_start == "ok"
    assert [side.name for side in run.sides] == ["predictive", "reactive"]
    for side in run.sides:
        # KEDA's cadence: one decision row per 15 s of simulated time, 20 minutes of them.
        assert [row.time_s for row in side.rows] == [15.0 * k for k in range(80)]
        assert side.keda.polls == 80 and side.keda.unavailable <= 1
        assert side.fleet.slo_attainment > 0.9
    predictive, reactive = run.sides
    # Flat demand: the service's default policy moves the replica count at most twice; the
    # reactive side, once settled from its warm start (10 minutes), at most twice by one.
    for side, after_s in ((predictive, 0.0), (reactive, 600.0)):
        desired = [row.desired_replicas for row in side.rows if row.time_s >= after_s]
        changes = [(a, b) for a, b in itertools.pairwise(desired) if a != b]
        assert len(changes) <= 2 and all(abs(a - b) == 1 for a, b in changes[1:]), \
            (side.name, changes)
    # The predictive side forecasts from its first decisions on (a warm forecaster).
    assert all(math.isfinite(row.forecast) for row in predictive.rows[1:])
    assert all(math.isfinite(u) for u in predictive.forecast_upper[1:])
    assert all(math.isnan(row.forecast) for row in reactive.rows)

    assert log.registry is not None
    ok = log.registry.get_sample_value("scaler_rpc_requests_total",
                                       {"method": "GetMetrics", "code": "OK"})
    assert ok is not None and ok >= 150 and ok == log.get_metrics_ok

    # Both sides' replay-style files, and the comparison plot.
    assert (tmp_path / "report.png").stat().st_size > 0
    for name in ("predictive", "reactive"):
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert summary["policy"] == f"{name} (live service)"
        assert summary["parameters"]["metadata"]["policy"] == name
        assert len((tmp_path / name / "decisions.csv").read_text().splitlines()) == 81

    # Live lines show both sides; the ending says what the forecast bought, in one line.
    assert f"gRPC 127.0.0.1:{log.grpc_port}" in lines[0]
    live = [line for line in lines if line.startswith("+0:")]
    assert [line[:5] for line in live] == ["+0:00", "+0:05", "+0:10", "+0:15", "+0:20"]
    assert all("predictive" in line and "reactive" in line for line in live)
    bought = [line for line in lines if line.startswith("What the forecast bought")]
    assert len(bought) == 1 and "GPU-hours (predictive vs reactive)" in bought[0]


async def test_the_demo_hour_shows_the_forecast_paying_ahead_of_the_ramp(tmp_path):
    """The headline, on the demo's own hour (the ramp at +20 min, the burst at +11): the
    predictive side meets the SLO as the reactive one does, for at least 15% fewer GPU-hours,
    and asks for the ramp's node before the ramp starts (the node takes 10 minutes)."""
    lines: list[str] = []
    run = await run_demo(wall_s=15, speed=240, seed=0, out=tmp_path, echo=lines.append)
    predictive, reactive = run.sides
    ramp_s = RAMP_AT_S - START_S
    assert predictive.fleet.slo_attainment >= 0.99
    assert predictive.fleet.slo_attainment >= reactive.fleet.slo_attainment - 0.005
    assert predictive.cluster.gpu_seconds <= 0.85 * reactive.cluster.gpu_seconds
    node_asks = [t for t, before, after in predictive.node_asks if after > before]
    assert node_asks and node_asks[0] < ramp_s - 300.0, predictive.node_asks
    # The forecast saw the ramp coming: on the ramp, its upper bound one pod start-up ahead
    # covered the demand that came then (a bound blurred over +-50 minutes did not).
    demand = {row.time_s: row.demand for row in predictive.rows}
    covered = [u >= 0.95 * demand[row.time_s + POD_STARTUP_S]
               for row, u in zip(predictive.rows, predictive.forecast_upper, strict=True)
               if ramp_s <= row.time_s < ramp_s + RAMP_S - POD_STARTUP_S]
    assert sum(covered) >= 0.9 * len(covered), covered
    bought = [line for line in lines if line.startswith("What the forecast bought")]
    assert len(bought) == 1
