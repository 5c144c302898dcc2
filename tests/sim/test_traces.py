"""Trace reading (real files and every error case) and scaling."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from scaler.sim.synthetic import synthetic_workload
from scaler.sim.traces import (
    RateTrace,
    RequestTrace,
    TraceError,
    describe,
    read_trace,
    scale,
)

TRACES = Path(__file__).resolve().parents[3] / "shared" / "traces"
needs_traces = pytest.mark.skipif(not TRACES.is_dir(), reason="shared traces not present")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- real traces


@needs_traces
def test_azure_trace_loads_fast_and_exact() -> None:
    start = time.perf_counter()
    trace = read_trace(TRACES / "azure_llm_code_2023.csv")
    assert time.perf_counter() - start < 1.0
    assert isinstance(trace, RequestTrace)
    assert trace.name == "azure_llm_code_2023"
    assert len(trace) == 8819
    assert trace.arrival_s[0] == 0.0
    assert trace.arrival_s[1] == pytest.approx(0.052, abs=1e-9)  # 7 fraction digits kept
    assert trace.duration_s == pytest.approx(3435.948056, abs=1e-6)
    assert np.all(np.diff(trace.arrival_s) >= 0)
    assert trace.prompt_tokens.dtype == np.int64
    assert trace.prompt_tokens.max() == 7437


@needs_traces
@pytest.mark.parametrize(("name", "zero_windows"),
                         [("servegen_m-mid_14d", 84), ("servegen_m-small_14d", 37)])
def test_servegen_traces_load_with_filled_tokens(name: str, zero_windows: int) -> None:
    start = time.perf_counter()
    trace = read_trace(TRACES / f"{name}.csv")
    assert time.perf_counter() - start < 1.0
    assert isinstance(trace, RateTrace)
    assert len(trace) == 2016
    assert trace.step_s == 600.0
    assert trace.duration_s == 14 * 86400
    assert np.all(np.diff(trace.start_s) == 600.0)
    # Every exact-zero window lies inside the trace: a collection hole, interpolated.
    assert trace.gap_windows == zero_windows
    assert int(np.sum(trace.rate == 0)) == 0
    assert not np.isnan(trace.mean_prompt).any()
    assert not np.isnan(trace.mean_output).any()
    assert f"{zero_windows} exact-zero window(s) inside read as collection holes" in describe(trace)


def test_zero_windows_inside_a_rate_trace_are_holes_filled_from_their_neighbours(
        tmp_path: Path) -> None:
    path = write(tmp_path, "r.csv", "timestamp_s,requests_per_s,mean_input_tokens,"
                 "mean_output_tokens\n0,0,,\n60,4,100,10\n120,0,,\n180,0,,\n240,10,400,40\n"
                 "300,0,,\n")
    trace = read_trace(path)
    assert isinstance(trace, RateTrace)
    # Leading and trailing zeros stay (the service may not have started, or stopped).
    assert trace.rate.tolist() == [0.0, 4.0, 6.0, 8.0, 10.0, 0.0]
    assert trace.mean_prompt[1:5].tolist() == [100.0, 200.0, 300.0, 400.0]
    assert trace.mean_output[1:5].tolist() == [10.0, 20.0, 30.0, 40.0]
    assert trace.gap_windows == 2
    assert scale(trace, 2.0).gap_windows == 2  # type: ignore[union-attr]
    assert "2 exact-zero window(s) inside read as collection holes" in describe(trace)
    steady = read_trace(write(tmp_path, "s.csv", "timestamp_s,requests_per_s\n0,1\n60,2\n"))
    assert "hole" not in describe(steady)


# --------------------------------------------------------------------------- formats


def test_numeric_seconds_request_trace(tmp_path: Path) -> None:
    path = write(tmp_path, "req.csv", "arrival_s,prompt_tokens,output_tokens\n"
                 "0.5,100,10\n1.25,200,20\n1.25,50,5\n")
    trace = read_trace(path)
    assert isinstance(trace, RequestTrace)
    assert trace.arrival_s.tolist() == [0.5, 1.25, 1.25]  # kept as given, not re-based
    assert trace.output_tokens.tolist() == [10, 20, 5]


def test_rate_trace_without_token_columns_gets_defaults(tmp_path: Path) -> None:
    trace = read_trace(write(tmp_path, "r.csv", "timestamp_s,requests_per_s\n0,1.5\n60,2\n"))
    assert isinstance(trace, RateTrace)
    assert trace.step_s == 60.0
    assert trace.mean_prompt.tolist() == [512.0, 512.0]
    assert trace.mean_output.tolist() == [128.0, 128.0]
    assert trace.duration_s == 120.0


def test_partly_empty_token_cells_use_the_rate_weighted_mean(tmp_path: Path) -> None:
    text = ("timestamp_s,requests_per_s,mean_input_tokens,mean_output_tokens\n"
            "0,1,100,10\n10,3,200,\n20,0,,\n")
    trace = read_trace(write(tmp_path, "r.csv", text))
    assert isinstance(trace, RateTrace)
    assert trace.mean_prompt.tolist() == [100.0, 200.0, 175.0]
    assert trace.mean_output.tolist() == [10.0, 10.0, 10.0]


def test_azure_datetimes_across_midnight(tmp_path: Path) -> None:
    text = ("TIMESTAMP,ContextTokens,GeneratedTokens\n"
            "2023-11-16 23:59:59.9000000,10,1\n2023-11-17 00:00:00.1000001,10,1\n")
    trace = read_trace(write(tmp_path, "a.csv", text))
    assert isinstance(trace, RequestTrace)
    assert trace.arrival_s[1] == pytest.approx(0.2000001, abs=1e-9)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b,c\n1,2,3\n",
         "x.csv line 1: unknown header 'a,b,c'; accepted headers: "
         "TIMESTAMP,ContextTokens,GeneratedTokens | arrival_s,prompt_tokens,output_tokens | "
         "timestamp_s,requests_per_s | "
         "timestamp_s,requests_per_s,mean_input_tokens,mean_output_tokens"),
        ("timestamp_s,requests_per_s\n0,1\n60,abc\n",
         "x.csv line 3, column requests_per_s: 'abc' is not a number"),
        ("timestamp_s,requests_per_s,mean_input_tokens,mean_output_tokens\n0,1,,\n600,-3,,\n",
         "x.csv line 3, column requests_per_s: '-3' is negative"),
        ("timestamp_s,requests_per_s\n0,1\n60,1\n30,1\n",
         "x.csv line 4, column timestamp_s: '30' is not after the previous row"),
        ("timestamp_s,requests_per_s\n0,1\n60,1\n180,1\n",
         "x.csv line 4, column timestamp_s: '180' breaks the 60 s step of the previous rows"),
        ("timestamp_s,requests_per_s\n0,inf\n60,1\n",
         "x.csv line 2, column requests_per_s: 'inf' is not a finite number"),
        ("arrival_s,prompt_tokens,output_tokens\n0,10,1\n2,10,1\n1,10,1\n",
         "x.csv line 4, column arrival_s: '1' is earlier than the previous row"),
        ("arrival_s,prompt_tokens,output_tokens\n0,10,1\n1,12.5,1\n",
         "x.csv line 3, column prompt_tokens: '12.5' is not an integer"),
        ("arrival_s,prompt_tokens,output_tokens\n0,10,-1\n",
         "x.csv line 2, column output_tokens: '-1' is negative"),
        ("arrival_s,prompt_tokens,output_tokens\n0,10\n",
         "x.csv line 2: expected 3 cells, found 2"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.1,1,1\nyesterday,1,1\n",
         "x.csv line 3, column TIMESTAMP: 'yesterday' is not a datetime like "
         "'2023-11-16 18:17:03.9799600'"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n"
         "2023-11-16 18:17:03.5,1,1\n2023-11-16 18:17:03.4,1,1\n",
         "x.csv line 3, column TIMESTAMP: '2023-11-16 18:17:03.4' is earlier than the previous "
         "row"),
        ("", "x.csv line 1: file is empty"),
        ("arrival_s,prompt_tokens,output_tokens\n", "x.csv line 2: no data rows"),
        ("timestamp_s,requests_per_s\n0,1\n",
         "x.csv line 2: a rate trace needs at least two rows to give its step"),
    ],
)
def test_errors_name_file_line_and_column(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "x.csv", text)
    with pytest.raises(TraceError) as info:
        read_trace(path)
    assert str(info.value) == f"{tmp_path}/{message}"
    assert isinstance(info.value, ValueError)


def test_error_attributes(tmp_path: Path) -> None:
    path = write(tmp_path, "s.csv", "timestamp_s,requests_per_s\n0,1\n600,-3\n")
    with pytest.raises(TraceError) as info:
        read_trace(path)
    assert (info.value.path, info.value.line, info.value.column) == (
        str(path), 3, "requests_per_s")


# --------------------------------------------------------------------------- scaling


def small_requests() -> RequestTrace:
    rng = np.random.default_rng(5)
    arrival = np.sort(rng.uniform(0, 1000, 4000))
    return RequestTrace("t", arrival, rng.integers(1, 100, 4000), rng.integers(1, 50, 4000))


def test_scale_rate_trace() -> None:
    trace = synthetic_workload(seed=1, days=1)
    scaled = scale(trace, 0.25)
    assert isinstance(scaled, RateTrace)
    assert scaled.name == f"{trace.name} x0.25"
    assert np.allclose(scaled.rate, trace.rate * 0.25)
    assert np.array_equal(scaled.mean_prompt, trace.mean_prompt)


def test_scale_down_thins_deterministically() -> None:
    trace = small_requests()
    a, b = scale(trace, 0.25), scale(trace, 0.25)
    assert isinstance(a, RequestTrace) and isinstance(b, RequestTrace)
    assert a.name == "t x0.25"
    assert np.array_equal(a.arrival_s, b.arrival_s)
    assert 900 < len(a) < 1100
    assert np.isin(a.arrival_s, trace.arrival_s).all()


def test_scale_up_superposes_shifted_copies() -> None:
    trace = small_requests()
    up = scale(trace, 2.5)
    assert isinstance(up, RequestTrace)
    assert 9700 < len(up) < 10300
    assert np.all(np.diff(up.arrival_s) >= 0)
    assert up.arrival_s[0] >= 0 and up.arrival_s[-1] <= trace.duration_s
    assert np.isin(trace.arrival_s, up.arrival_s).all()  # originals kept
    # Copies keep lengths: same token totals per copy on average.
    assert up.prompt_tokens.mean() == pytest.approx(trace.prompt_tokens.mean(), rel=0.05)
    # Copies are shifted streams, not clumps around their source: bursts do not multiply.
    per_second = np.bincount(up.arrival_s.astype(np.int64))
    original = np.bincount(trace.arrival_s.astype(np.int64))
    assert per_second.max() < 2.5 * original.max()


def test_scale_rejects_bad_factor() -> None:
    with pytest.raises(ValueError, match="scale factor"):
        scale(small_requests(), 0)
