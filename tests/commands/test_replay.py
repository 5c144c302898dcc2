"""`scaler replay` and `scaler bench` as a user runs them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

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
                     str(out), "--scale-down-window", f"{window:g}", "--rate-scale", "0.5"]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["parameters"]["scale_down_window_s"] == window
        with (out / "decisions.csv").open() as f:  # after 130 req/s falls to 45 at 1,800 s
            rows = [r for r in csv.DictReader(f) if 1800 <= float(r["time_s"]) < 3000]
        held[window] = sum(int(r["desired_replicas"]) for r in rows)
    assert held[600.0] > held[0.0]
    assert main(["replay", "--trace", str(trace), "--scale-down-window", "-1"]) == 2
    assert "--scale-down-window: '-1' is out of range: must be >= 0" in capsys.readouterr().err


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


# --------------------------------------------------------------------------- replica bounds


def read_rows(out: Path) -> list[dict[str, str]]:
    with (out / "decisions.csv").open() as f:
        return list(csv.DictReader(f))


def test_replica_bounds_bind_the_policy_and_are_in_every_output(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["replay", "--trace", str(trace_file(tmp_path)), "--policy", "predictive",
                 "--out", str(out), "--min-replicas", "2", "--max-replicas", "3",
                 "--rate-scale", "0.3"]) == 0
    printed = capsys.readouterr().out
    assert "replicas 2-3 (cap: --max-replicas)" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parameters"]["min_replicas"] == 2
    assert summary["parameters"]["max_replicas"] == 3
    desired = {int(r["desired_replicas"]) for r in read_rows(out)}
    assert min(desired) == 2 and max(desired) == 3
    report = (out / "report.md").read_text()
    assert "Replicas 2-3 (cap: --max-replicas)" in report


def test_the_default_cap_is_twice_the_oracles_peak_and_said(tmp_path, capsys):
    trace = trace_file(tmp_path)
    assert main(["replay", "--trace", str(trace), "--policy", "oracle",
                 "--out", str(tmp_path / "oracle")]) == 0
    peak = max(int(r["desired_replicas"]) for r in read_rows(tmp_path / "oracle"))
    capsys.readouterr()
    out = tmp_path / "reactive"
    assert main(["replay", "--trace", str(trace), "--out", str(out)]) == 0
    said = f"replicas 1-{2 * peak} (cap: 2x the oracle's peak of {peak})"
    assert said in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["parameters"]["max_replicas"] == 2 * peak
    assert f"Replicas 1-{2 * peak} (cap: 2x the oracle's peak of {peak})" in (
        out / "report.md").read_text()


def test_bench_takes_the_same_bounds():
    from scaler.commands.cli import _parser

    args = _parser().parse_args(["bench", "--min-replicas", "2", "--max-replicas", "7"])
    assert (args.min_replicas, args.max_replicas) == (2, 7)


@pytest.mark.parametrize("flag,value", [("--max-replicas", "0"), ("--min-replicas", "-1"),
                                         ("--max-replicas", "2.5"), ("--min-replicas", "x")])
def test_a_bad_replica_bound_is_one_line_naming_flag_value_and_range(flag, value, capsys):
    assert main(["replay", flag, value]) == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: '{value}' is " in err
    assert "a whole number of replicas" in err or "must be > 0" in err
    assert "Traceback" not in err


def test_min_above_max_is_refused_naming_both(tmp_path, capsys):
    trace = str(trace_file(tmp_path))
    assert main(["replay", "--trace", trace, "--min-replicas", "5", "--max-replicas", "3"]) == 2
    assert "scaler: --min-replicas 5 is above --max-replicas 3" in capsys.readouterr().err
    assert main(["replay", "--trace", trace, "--min-replicas", "500"]) == 2
    err = capsys.readouterr().err
    assert "scaler: --min-replicas 500 is above the default cap" in err
    assert "give --max-replicas too" in err


# --------------------------------------------------------------------------- headline


def test_a_run_below_target_says_so_with_its_likely_cause(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["replay", "--trace", str(trace_file(tmp_path)), "--policy", "reactive",
                 "--out", str(out), "--max-replicas", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    headline = next(i for i, line in enumerate(lines) if line.startswith("reactive-kv (knob"))
    assert lines[headline + 1].startswith("BELOW the 99% SLO target (")
    assert "likely the replica cap (1) reached" in lines[headline + 1]
    report = (out / "report.md").read_text()
    assert "**BELOW the 99% SLO target (" in report
    assert "likely the replica cap (1) reached" in report


def test_counts_are_whole_and_the_oracles_knob_is_its_miss_share(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["replay", "--trace", str(trace_file(tmp_path)), "--policy", "oracle",
                 "--out", str(out), "--rate-scale", "0.3713"]) == 0
    printed = capsys.readouterr().out
    assert "None" not in printed and "nan" not in printed
    assert "oracle (knob miss_share=0.01) on" in printed
    assert "replica bounds not used by oracle" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert not float(summary["requests"]).is_integer()  # the fluid model's expected count
    report = (out / "report.md").read_text()
    assert f"| {round(summary['requests'])} |" in report
    assert "| knob | miss_share |" in report and "| knob_value | 0.01 |" in report
    assert "nan" not in report and "None" not in report


# --------------------------------------------------------------------------- progress


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drive(show, clock: Clock) -> None:
    for step in range(11):
        clock.now = step * 0.5
        show(step / 10)


def test_progress_on_a_terminal_is_a_bar_redrawn_in_place():
    import os
    import select
    import tty as terminal

    from scaler.commands.replay import progress_bar

    main_fd, tty_fd = os.openpty()
    terminal.setraw(tty_fd)  # no "\n" -> "\r\n" translation: count only the bar's frames
    chunks = []
    try:
        with open(tty_fd, "w", closefd=False) as tty:
            clock = Clock()
            drive(progress_bar("replay reactive", stream=tty, clock=clock), clock)
        while select.select([main_fd], [], [], 0)[0]:  # all written already; drain it
            chunks.append(os.read(main_fd, 65536))
    finally:
        os.close(main_fd)
        os.close(tty_fd)
    written = b"".join(chunks).decode()
    assert written.count("\r") == 9  # from the first tick past a second
    assert written.endswith("] 100%\n")


def test_progress_into_a_file_or_pipe_is_one_line_without_frames(tmp_path):
    from scaler.commands.replay import progress_bar

    with (tmp_path / "err.txt").open("w") as log:
        clock = Clock()
        drive(progress_bar("replay reactive", stream=log, clock=clock), clock)
        fast = Clock()
        drive(progress_bar("quick run", stream=log, clock=fast), Clock())  # under a second
    assert (tmp_path / "err.txt").read_text() == "replay reactive: done in 5.0 s\n"

