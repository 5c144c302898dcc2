"""`scaler demo` end to end: 20 simulated minutes of a morning in 4 s against the live service."""

from __future__ import annotations

import json
import math

from scaler.commands.demo import run_demo
from scaler.commands.demo_loop import POD_STARTUP_S, DemoLog


async def test_demo_scales_emulated_pods_through_keda_and_hpa(tmp_path):
    lines: list[str] = []
    log = DemoLog()
    result = await run_demo(wall_s=4, speed=300, seed=0, out=tmp_path, echo=lines.append,
                            log=log)

    # KEDA's cadence: one decision row per 15 s of simulated time, 20 minutes of them.
    times = [row.time_s for row in result.decisions]
    assert times == [15.0 * k for k in range(80)]
    assert all(math.isnan(row.forecast) for row in result.decisions)

    # The service answered, and the HPA acted on it: more replicas than the warm start.
    initial = result.parameters["initial_replicas"]
    assert log.registry is not None
    ok = log.registry.get_sample_value("scaler_rpc_requests_total",
                                       {"method": "GetMetrics", "code": "OK"})
    assert ok is not None and ok >= 70 and ok == log.get_metrics_ok
    assert log.polls == 80 and log.unavailable <= 2
    ups = [(t, to) for t, before, to in log.asks if to > before]
    assert ups and max(row.desired_replicas for row in result.decisions) > initial

    # Emulated pods came up only after the pod start-up delay following the first ask.
    warm = [rid for t, rid in log.pod_starts if t == 0.0]
    later = [t for t, _ in log.pod_starts if t > 0.0]
    assert len(warm) == initial and later
    assert min(later) >= ups[0][0] + POD_STARTUP_S
    assert max(row.ready_replicas for row in result.decisions) > initial

    # external-push: the held StreamIsActive saw the workload's activity.
    assert log.stream_messages >= 1 and log.stream_error is None

    # The same outputs as a replay, with the demo's parameters.
    for name in ("summary.json", "decisions.csv", "report.md", "report.png"):
        assert (tmp_path / name).stat().st_size > 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["policy"] == "reactive (live service)"
    assert summary["parameters"]["speed"] == 300 and summary["parameters"]["rate_scale"] == 0.5
    assert 0.5 < result.slo_attainment <= 1.0 and result.gpu_hours > 0
    assert len((tmp_path / "decisions.csv").read_text().splitlines()) == 81

    # Live progress: ports first, one line per 5 simulated minutes, then the headline block.
    assert f"gRPC 127.0.0.1:{log.grpc_port}" in lines[0]
    assert [line[:5] for line in lines if line[:2] == "00"] == [
        "00:00", "00:05", "00:10", "00:15", "00:20"]
    assert any("SLO attainment" in line for line in lines)
