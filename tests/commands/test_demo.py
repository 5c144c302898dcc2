"""`scaler demo` end to end: both ScaledObjects against the live service, on its sim clock."""

from __future__ import annotations

import itertools
import json
import math

from scaler.commands.demo import run_demo
from scaler.commands.demo_loop import DemoLog


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
    # Flat demand: the service's default policy moves the replica count at most twice.
    desired = [row.desired_replicas for row in predictive.rows]
    changes = [(a, b) for a, b in itertools.pairwise(desired) if a != b]
    assert len(changes) <= 2, changes
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
