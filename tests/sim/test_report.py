"""Replay outputs: exact CSV and JSON layouts that read back, the markdown numbers, real PNGs."""

from __future__ import annotations

import csv
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest

from scaler.sim.comparison import write_comparison
from scaler.sim.report import (
    CSV_COLUMNS,
    plot_report,
    read_decisions,
    trace_name,
    write_outputs,
)
from scaler.sim.report_plot import (
    bucket_band,
    bucket_max,
    bucket_mean,
    bucket_starts,
    report_figure,
)
from scaler.sim.results import DecisionRow, ReplayResult

HEADER = "time_s,desired_replicas,ready_replicas,desired_nodes,ready_nodes,demand,forecast"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def rows(n: int) -> list[DecisionRow]:
    """A day-shaped demand at 15 s ticks; no forecast for the first 10 ticks; a spike at n//2."""
    out = []
    for i in range(n):
        demand = 20.0 + 15.0 * math.sin(2 * math.pi * i / 5760) + (i % 7) / 3
        need = math.ceil(demand / 4) + (30 if i == n // 2 else 0)
        ready = need - (i % 5 == 0)
        out.append(DecisionRow(
            time_s=15.0 * i, desired_replicas=need, ready_replicas=ready,
            desired_nodes=math.ceil(need / 8), ready_nodes=math.ceil(ready / 8), demand=demand,
            forecast=math.nan if i < 10 else demand * 1.1, slo_misses=float(i % 11 == 0) * 3.5))
    return out


def result(n: int = 200, policy: str = "predictive", gpu_hours: float = 1234.5
           ) -> ReplayResult:
    return ReplayResult(
        policy=policy, parameters={"trace": "azure_code", "lead_time_s": 600.0,
                                   "buckets": [1, 2], "note": "a|b"},
        requests=123456.0, slo_attainment=0.98765, ttft_p50_s=0.41, ttft_p95_s=1.2345,
        ttft_p99_s=math.inf, gpu_hours=gpu_hours, node_hours=160.25, scale_events=321,
        decisions=rows(n))


def same_row(a: DecisionRow, b: DecisionRow) -> bool:
    both_nan = math.isnan(a.forecast) and math.isnan(b.forecast)
    return (both_nan or a.forecast == b.forecast) and (
        a.time_s, a.desired_replicas, a.ready_replicas, a.desired_nodes, a.ready_nodes, a.demand,
        a.slo_misses) == (b.time_s, b.desired_replicas, b.ready_replicas, b.desired_nodes,
                          b.ready_nodes, b.demand, b.slo_misses)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# --------------------------------------------------------------------------- files


def test_write_outputs_writes_the_four_files(tmp_path: Path) -> None:
    paths = write_outputs(result(), tmp_path / "run")
    assert paths == {"summary": tmp_path / "run" / "summary.json",
                     "decisions": tmp_path / "run" / "decisions.csv",
                     "report": tmp_path / "run" / "report.md",
                     "plot": tmp_path / "run" / "report.png"}
    assert all(path.is_file() for path in paths.values())


def test_summary_json_is_the_summary_with_null_for_infinity(tmp_path: Path) -> None:
    r = result()
    paths = write_outputs(r, tmp_path)
    text = paths["summary"].read_text()
    assert text.startswith('{\n  "policy": "predictive",')  # indent 2
    document = json.loads(text)
    assert list(document) == ["policy", "parameters", "requests", "slo_attainment", "ttft_p50_s",
                              "ttft_p95_s", "ttft_p99_s", "gpu_hours", "node_hours",
                              "scale_events"]
    assert document == r.summary()  # ttft_p99_s is already None there
    assert document["ttft_p99_s"] is None


def test_summary_json_never_writes_nan(tmp_path: Path) -> None:
    r = result()
    r.slo_attainment = math.nan
    r.parameters["rate"] = math.inf
    document = json.loads(write_outputs(r, tmp_path)["summary"].read_text())
    assert document["slo_attainment"] is None
    assert document["parameters"]["rate"] is None


def test_decisions_csv_header_and_values_round_trip(tmp_path: Path) -> None:
    r = result()
    path = write_outputs(r, tmp_path)["decisions"]
    lines = path.read_text().splitlines()
    assert lines[0] == HEADER + ",slo_misses"
    assert ",".join(CSV_COLUMNS[:7]) == HEADER
    assert len(lines) == 1 + len(r.decisions)
    with path.open(newline="") as src:
        records = list(csv.DictReader(src))
    assert records[0]["forecast"] == ""  # NaN written empty
    assert float(records[10]["forecast"]) == r.decisions[10].forecast  # exact, not rounded
    assert int(records[100]["desired_replicas"]) == r.decisions[100].desired_replicas
    assert float(records[11]["slo_misses"]) == 3.5
    back = read_decisions(path)
    assert len(back) == len(r.decisions)
    assert all(same_row(a, b) for a, b in zip(back, r.decisions, strict=True))


def test_read_decisions_rejects_another_csv(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError) as err:
        read_decisions(path)
    assert str(err.value) == f"{path}: header 'a,b' is not a decisions.csv header"


def test_report_md_has_the_title_tables_and_numbers(tmp_path: Path) -> None:
    text = write_outputs(result(), tmp_path)["report"].read_text()
    assert text.startswith("# Replay: predictive on azure_code\n")
    results_row = ("| 123456 | 98.77 % | 0.410 | 1.234 | n/a | 1234.50 | 160.25 | 321 |")
    assert results_row in text
    assert "| requests | SLO attainment | TTFT p50 (s) | TTFT p95 (s) | TTFT p99 (s) | GPU-hours" \
        in text
    assert "| lead_time_s | 600.0 |" in text
    assert "| buckets | [1, 2] |" in text
    assert "| note | a\\|b |" in text  # a pipe in a value does not break the table
    assert "](report.png)" in text


def test_report_png_is_a_real_png(tmp_path: Path) -> None:
    path = write_outputs(result(), tmp_path)["plot"]
    assert png_size(path) == (1200, 1100)
    assert path.stat().st_size > 10_000


def test_empty_result_still_writes_everything(tmp_path: Path) -> None:
    r = result(n=0)
    paths = write_outputs(r, tmp_path)
    assert paths["decisions"].read_text() == HEADER + ",slo_misses\n"
    assert read_decisions(paths["decisions"]) == []
    assert png_size(paths["plot"]) == (1200, 1100)


def test_a_long_run_is_plotted_from_buckets(tmp_path: Path) -> None:
    # 20k rows here; 80,640 rows (14 days of 15 s ticks) render in about half a second
    path = tmp_path / "long.png"
    plot_report(result(n=20_000), path)
    assert png_size(path) == (1200, 1100)


def test_trace_name_comes_from_the_parameters() -> None:
    r = result()
    assert trace_name(r) == "azure_code"
    r.parameters = {}
    assert trace_name(r) == "unnamed trace"


# --------------------------------------------------------------------------- downsampling


def test_buckets_keep_spikes_and_average_without_nan() -> None:
    starts = bucket_starts(10_000, max_points=1000)
    assert len(starts) == 1000 and starts[1] == 10
    values = np.zeros(10_000)
    values[4321] = 9.0
    peaks = bucket_max(values, starts)
    assert peaks.max() == 9.0 and peaks[432] == 9.0
    forecast = np.full(30, np.nan)
    forecast[[12, 14]] = [4.0, 2.0]
    forecast[20:] = 2.0
    assert np.array_equal(bucket_mean(forecast, bucket_starts(30, max_points=3)),
                          np.array([np.nan, 3.0, 2.0]), equal_nan=True)
    assert len(bucket_starts(5, max_points=1000)) == 5  # short runs are not resampled


def flapping(n: int) -> list[DecisionRow]:
    """40 ready replicas, falling to 1 for 4 of every 9 minutes (36 ticks of 15 s)."""
    out = []
    for i in range(n):
        ready = 1 if i % 36 < 16 else 40
        out.append(DecisionRow(time_s=15.0 * i, desired_replicas=ready, ready_replicas=ready,
                               desired_nodes=5, ready_nodes=5, demand=100.0 + i % 36,
                               slo_misses=50.0 if ready == 1 else 0.0))
    return out


def test_a_series_flapping_inside_buckets_is_a_band_from_min_to_max() -> None:
    values = np.array([r.ready_replicas for r in flapping(80_640)], dtype=float)
    starts = bucket_starts(len(values))
    band = bucket_band(values, starts)
    assert len(starts) == 1967  # 41 ticks (10.25 min) per bucket: every bucket holds a cliff
    assert band.low.max() == 1.0 and band.high.min() == 40.0
    assert 1.0 < band.mean.min() <= band.mean.max() < 40.0
    nan_gap = np.array([np.nan, np.nan, 2.0, 4.0])
    gap = bucket_band(nan_gap, np.array([0, 2], dtype=np.intp))
    assert np.isnan(gap.low[0]) and (gap.low[1], gap.mean[1], gap.high[1]) == (2.0, 3.0, 4.0)


def test_every_panel_draws_bands_and_its_legend_says_so() -> None:
    r = result(n=80_640)
    r.decisions = flapping(80_640)
    axes = report_figure(r).axes
    wanted = {0: ["demand"], 1: ["ready replicas", "desired replicas"],
              2: ["ready nodes", "desired nodes"], 3: ["requests missing the TTFT SLO"]}
    for index, labels in wanted.items():
        ax = axes[index]
        assert "line = mean, band = min-max" in ax.get_title(loc="left")
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        for label in labels:
            assert f"{label}: min-max per bucket" in legend
            assert f"{label}: mean per bucket" in legend
    ready_band = next(c for c in axes[1].collections
                      if c.get_label() == "ready replicas: min-max per bucket")
    heights = ready_band.get_paths()[0].vertices[:, 1]
    assert heights.min() == 1.0 and heights.max() == 40.0  # not "pinned at 40"


def test_a_short_run_is_drawn_as_plain_lines() -> None:
    axes = report_figure(result(n=100)).axes
    assert not axes[1].collections
    legend = [t.get_text() for t in axes[1].get_legend().get_texts()]
    assert legend == ["ready replicas", "desired replicas"]


# --------------------------------------------------------------------------- comparison


def test_comparison_table_with_the_oracle_ratio(tmp_path: Path) -> None:
    runs = [result(policy="oracle", gpu_hours=1000.0), result(policy="reactive", gpu_hours=1500.0),
            result(policy="predictive", gpu_hours=1234.5)]
    md, png = tmp_path / "bench.md", tmp_path / "bench.png"
    write_comparison(runs, md, png)
    lines = md.read_text().splitlines()
    assert lines[0] == "# Policies compared on azure_code"
    assert lines[2].startswith("| policy | knob | requests | SLO attainment |")
    assert lines[2].endswith("| scale events | GPU-hours / oracle |")
    assert lines[4] == ("| oracle | - | 123456 | 98.77 % | 0.410 | 1.234 | n/a | 1000.00 | 160.25 "
                        "| 321 | 1.000 |")
    assert lines[5].endswith("| 1500.00 | 160.25 | 321 | 1.500 |")
    assert lines[6].endswith("| 1234.50 | 160.25 | 321 | 1.234 |")
    assert "![comparison](bench.png)" in lines
    assert png_size(png) == (1200, 800)
    assert png.stat().st_size > 10_000


def test_comparison_lists_each_knob_and_the_ratio_to_the_best_reactive(tmp_path: Path) -> None:
    kv, rate = result(policy="reactive-kv", gpu_hours=3000.0), result(policy="reactive-rate")
    kv.parameters.update(knob="targetKvCacheUsage", knob_value=0.003, knob_at_edge=True)
    rate.parameters.update(knob="requestsPerSecondPerReplica", knob_value=12.5)
    md = tmp_path / "bench.md"
    write_comparison([kv, rate], md, None, best_reactive="reactive-rate")
    lines = md.read_text().splitlines()
    assert lines[2].endswith("| GPU-hours / best reactive | node-hours / best reactive |")
    assert lines[4].startswith("| reactive-kv | targetKvCacheUsage=0.003 (grid edge) | 123456 |")
    assert lines[4].endswith("| 2.430 | 1.000 |")
    assert lines[5].startswith("| reactive-rate | requestsPerSecondPerReplica=12.5 |")
    assert "Best reactive policy meeting the SLO: reactive-rate." in lines


def test_comparison_without_oracle_or_figure(tmp_path: Path) -> None:
    md = tmp_path / "bench.md"
    write_comparison([result(policy="reactive")], md, None)
    text = md.read_text()
    assert "oracle" not in text
    assert "png" not in text
    assert "| reactive | - | 123456 |" in text
    assert "Best reactive policy meeting the SLO: none." in text


def test_comparison_needs_results(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as err:
        write_comparison([], tmp_path / "bench.md", None)
    assert str(err.value) == "write_comparison needs at least one result"


# --------------------------------------------------------------------------- knob and bounds


def test_knob_and_bounds_as_outputs_say_them(tmp_path: Path) -> None:
    from scaler.sim.report import bounds_text, knob_text

    r = result(policy="reactive")
    assert bounds_text(r) == "replica bounds not recorded"
    r.parameters.update(min_replicas=2, max_replicas=16)  # as the demo records them
    assert bounds_text(r) == "replicas 2-16"
    r.parameters["max_replicas_from"] = "--max-replicas"
    assert bounds_text(r) == "replicas 2-16 (cap: --max-replicas)"
    r.policy = "static"
    assert bounds_text(r) == "replica bounds not used by static"
    assert knob_text({"knob": "none", "knob_value": math.nan}) == "-"
    assert knob_text({"knob": "headroom", "knob_value": 1.1}) == "headroom=1.1"
    assert knob_text({}) == "-"
    r.policy = "predictive"
    text = write_outputs(r, tmp_path)["report"].read_text()
    assert "Knob: -. Replicas 2-16 (cap: --max-replicas).\n" in text
    # no slo_target recorded: the default 99%, which 98.77% misses
    assert "\n**BELOW the 99% SLO target (98.77%): likely too little headroom/target" in text
