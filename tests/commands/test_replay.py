"""`scaler replay` and `scaler bench` as a user runs them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from scaler.commands.cli import main
from scaler.commands.flags import REPLAY_POLICIES

TRACE = "timestamp_s,requests_per_s,mean_input_tokens,mean_output_tokens\n" + "".join(
    f"{i * 600},{rate},600,200\n" for i, rate in enumerate((40, 120, 260, 90, 0, 200)))


def trace_file(tmp_path: Path, text: str = TRACE) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text(text)
    return path


def test_replay_writes_summary_decisions_report_and_plot(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["replay", "--trace", str(trace_file(tmp_path)), "--policy", "reactive",
                 "--out", str(out), "--rate-scale", "2", "--pod-startup", "120",
                 "--node-startup", "600", "--slo-ttft", "1.5", "--gpus-per-replica", "2",
                 "--gpus-per-node", "8"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "demand scaled x2" in printed and "SLO attainment" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["policy"] == "reactive-kv"  # "reactive" is its former name
    assert summary["parameters"]["rate_scale"] == 2
    assert summary["parameters"]["pod_startup_s"] == 120
    assert summary["parameters"]["slo_ttft_s"] == 1.5
    assert summary["parameters"]["gpus_per_replica"] == 2
    for key in ("requests", "slo_attainment", "ttft_p50_s", "ttft_p95_s", "ttft_p99_s",
                "gpu_hours", "node_hours", "scale_events"):
        assert key in summary
    with (out / "decisions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:7] == ["time_s", "desired_replicas", "ready_replicas",
                                 "desired_nodes", "ready_nodes", "demand", "forecast"]
    assert len(rows) == 6 * 600 // 15
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "SLO attainment" in (out / "report.md").read_text()


def test_predictive_replay_uses_the_scale_down_window_asked_for(tmp_path, capsys):
    trace = trace_file(tmp_path)
    held: dict[float, int] = {}
    for window in (0.0, 600.0):
        out = tmp_path / f"w{window:g}"
        assert main(["replay", "--trace", str(trace), "--policy", "predictive", "--out",
                     str(out), "--scale-down-window", f"{window:g}"]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["parameters"]["scale_down_window_s"] == window
        with (out / "decisions.csv").open() as f:  # after 260 req/s falls to 90 at 1,800 s
            rows = [r for r in csv.DictReader(f) if 1800 <= float(r["time_s"]) < 2400]
        held[window] = sum(int(r["desired_replicas"]) for r in rows)
    assert held[600.0] > held[0.0]
    assert main(["replay", "--trace", str(trace), "--scale-down-window", "-1"]) == 2
    assert "--scale-down-window must be >= 0 seconds, got -1.0" in capsys.readouterr().err


def test_a_bad_trace_names_file_line_and_column(tmp_path, capsys):
    bad = trace_file(tmp_path, "timestamp_s,requests_per_s\n0,5\n600,-3\n")
    assert main(["replay", "--trace", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "trace.csv line 3, column requests_per_s: '-3' is negative" in err


def test_bench_picks_the_cheapest_knob_meeting_the_slo(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--trace", str(trace_file(tmp_path)), "--out", str(out)]) == 0
    bench = json.loads((out / "bench.json").read_text())
    policies = bench["policies"]
    assert set(policies) == set(REPLAY_POLICIES)
    assert policies["oracle"]["gpu_hours_vs_oracle"] == 1.0
    meeting = {name: row for name, row in policies.items()
               if name.startswith("reactive-") and row["slo_attainment"] >= 0.99}
    best = bench["best_reactive"]
    assert best == min(meeting, key=lambda name: meeting[name]["gpu_hours"])
    assert policies[best]["gpu_hours_vs_best_reactive"] == 1.0
    for name, row in policies.items():
        assert set(row) >= {"knob", "knob_value", "knob_at_edge", "gpu_hours", "node_hours",
                            "slo_attainment", "gpu_hours_vs_oracle", "node_hours_vs_oracle",
                            "gpu_hours_vs_best_reactive", "node_hours_vs_best_reactive"}
        assert row["gpu_hours_vs_best_reactive"] == round(
            row["gpu_hours"] / policies[best]["gpu_hours"], 3)
        if row["slo_attainment"] >= 0.99:
            assert row["gpu_hours_vs_oracle"] >= 1.0, name
    assert policies["reactive-rate"]["knob"] == "requestsPerSecondPerReplica"
    text = (out / "bench.md").read_text()
    for name, row in policies.items():
        if name != "oracle" or row["knob_value"] is not None:
            assert f"| {name} | {row['knob']}=" in text
    printed = capsys.readouterr()
    assert "run 1 of " in printed.err
    assert "1 exact-zero window(s) inside read as collection holes" in printed.out
    assert f"best reactive: {best}" in printed.out


def test_bench_takes_the_former_reactive_name_as_reactive_kv(tmp_path):
    out = tmp_path / "bench"
    assert main(["bench", "--trace", str(trace_file(tmp_path)), "--out", str(out),
                 "--policy", "reactive", "--policy", "reactive-kv"]) == 0
    assert list(json.loads((out / "bench.json").read_text())["policies"]) == ["reactive-kv"]
