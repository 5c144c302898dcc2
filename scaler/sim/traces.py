"""Traces for the replay: per-request logs and per-window request rates, read and scaled.

Two kinds of trace, told apart by the CSV header:

* request traces, one row per request: ``TIMESTAMP,ContextTokens,GeneratedTokens`` (the
  Azure LLM inference trace of Splitwise, ISCA 2024: datetimes such as
  ``2023-11-16 18:17:03.9799600``, re-based so the first request arrives at 0 s) or
  ``arrival_s,prompt_tokens,output_tokens`` (seconds from the trace start, kept as given);
* rate traces, one row per fixed window: ``timestamp_s,requests_per_s`` optionally followed by
  ``mean_input_tokens,mean_output_tokens`` (the ServeGen (NSDI 2026) aggregates). Empty token
  cells are filled with the trace's own rate-weighted mean of that column, else (no cell
  filled at all) with 512 prompt / 128 output tokens.

Every problem is a :class:`TraceError` naming file, line and column. Parsing uses the csv
module and numpy only (the 8.8k-row Azure file loads in tens of milliseconds).

Scaling (``scale``): a rate trace has its rates multiplied. A request trace keeps its time
axis; for a factor below 1 each request is kept with probability ``factor`` (seeded RNG), for
a factor above 1 every request is kept and ``factor - 1`` extra copies of the whole trace are
superposed, each shifted circularly in time by a seeded offset (the last one thinned to the
fractional part): independent streams with the trace's own burst structure, rather than
copies clumped around each request, which would multiply every burst by the factor.

Synthetic workloads are made by :mod:`scaler.sim.synthetic`.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "ACCEPTED_HEADERS",
    "DEFAULT_MEAN_OUTPUT",
    "DEFAULT_MEAN_PROMPT",
    "RateTrace",
    "RequestTrace",
    "TraceError",
    "describe",
    "read_trace",
    "scale",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DEFAULT_MEAN_PROMPT = 512.0
DEFAULT_MEAN_OUTPUT = 128.0

AZURE_HEADER = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
SECONDS_HEADER = ("arrival_s", "prompt_tokens", "output_tokens")
RATE_HEADER = ("timestamp_s", "requests_per_s")
RATE_TOKENS_HEADER = (*RATE_HEADER, "mean_input_tokens", "mean_output_tokens")
ACCEPTED_HEADERS = (AZURE_HEADER, SECONDS_HEADER, RATE_HEADER, RATE_TOKENS_HEADER)


class TraceError(ValueError):
    """A trace file that cannot be read; the message names file, line and column."""

    def __init__(self, path: str, message: str, line: int | None = None,
                 column: str | None = None) -> None:
        self.path = path
        self.line = line
        self.column = column
        where = path
        if line is not None:
            where += f" line {line}"
        if column is not None:
            where += f", column {column}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class RequestTrace:
    """One row per request: arrival (s from trace start, sorted), prompt and output tokens."""

    name: str
    arrival_s: FloatArray
    prompt_tokens: IntArray
    output_tokens: IntArray

    def __post_init__(self) -> None:
        arrival = np.asarray(self.arrival_s, dtype=np.float64)
        prompt = np.asarray(self.prompt_tokens, dtype=np.int64)
        output = np.asarray(self.output_tokens, dtype=np.int64)
        if not (arrival.ndim == prompt.ndim == output.ndim == 1):
            raise ValueError("RequestTrace columns must be 1-D arrays")
        if not (arrival.size == prompt.size == output.size):
            raise ValueError(
                f"RequestTrace columns differ in length: {arrival.size} arrivals, "
                f"{prompt.size} prompts, {output.size} outputs"
            )
        if arrival.size and (np.any(np.diff(arrival) < 0) or not np.all(np.isfinite(arrival))):
            raise ValueError("RequestTrace arrivals must be finite and sorted")
        object.__setattr__(self, "arrival_s", arrival)
        object.__setattr__(self, "prompt_tokens", prompt)
        object.__setattr__(self, "output_tokens", output)

    def __len__(self) -> int:
        return int(self.arrival_s.size)

    @property
    def duration_s(self) -> float:
        """Time of the last arrival (the trace starts at 0 s); 0 for an empty trace."""
        return float(self.arrival_s[-1]) if self.arrival_s.size else 0.0


@dataclass(frozen=True)
class RateTrace:
    """Fixed windows of ``step_s`` starting at ``start_s``: mean arrival rate and lengths."""

    name: str
    step_s: float
    start_s: FloatArray
    rate: FloatArray
    mean_prompt: FloatArray
    mean_output: FloatArray
    gap_windows: int = 0  # exact-zero windows inside the trace, read as collection holes

    def __post_init__(self) -> None:
        columns = [np.asarray(getattr(self, key), dtype=np.float64)
                   for key in ("start_s", "rate", "mean_prompt", "mean_output")]
        if any(c.ndim != 1 or c.size != columns[0].size for c in columns):
            raise ValueError("RateTrace columns must be 1-D arrays of one length")
        if not (math.isfinite(self.step_s) and self.step_s > 0):
            raise ValueError(f"RateTrace step_s must be > 0, got {self.step_s!r}")
        for key, column in zip(("start_s", "rate", "mean_prompt", "mean_output"), columns,
                               strict=True):
            object.__setattr__(self, key, column)

    def __len__(self) -> int:
        return int(self.rate.size)

    @property
    def duration_s(self) -> float:
        """From the first window's start to the last window's end."""
        if not self.rate.size:
            return 0.0
        return float(self.start_s[-1] - self.start_s[0] + self.step_s)


# --------------------------------------------------------------------------- reading


def read_trace(path: str | Path) -> RequestTrace | RateTrace:
    """Read a request or rate trace CSV, detected by its header (see the module docstring)."""
    label = str(path)
    name = Path(path).stem
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise TraceError(label, "file is empty", line=1)
        columns = tuple(cell.strip() for cell in header)
        if columns == AZURE_HEADER:
            return _read_requests(reader, label, name, columns, datetimes=True)
        if columns == SECONDS_HEADER:
            return _read_requests(reader, label, name, columns, datetimes=False)
        if columns in (RATE_HEADER, RATE_TOKENS_HEADER):
            return _read_rates(reader, label, name, columns)
    accepted = " | ".join(",".join(h) for h in ACCEPTED_HEADERS)
    raise TraceError(label, f"unknown header {','.join(columns)!r}; accepted headers: {accepted}",
                     line=1)


def _rows(reader: Any, label: str, width: int) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of each non-blank data row, checking the cell count."""
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != width:
            raise TraceError(label, f"expected {width} cells, found {len(row)}",
                             line=reader.line_num)
        yield reader.line_num, row


def _number(label: str, line: int, column: str, text: str, *, allow_negative: bool = False
            ) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TraceError(label, f"{text!r} is not a number", line, column) from None
    if not math.isfinite(value):
        raise TraceError(label, f"{text!r} is not a finite number", line, column)
    if value < 0 and not allow_negative:
        raise TraceError(label, f"{text!r} is negative", line, column)
    return value


def _count(label: str, line: int, column: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise TraceError(label, f"{text!r} is not an integer", line, column) from None
    if value < 0:
        raise TraceError(label, f"{text!r} is negative", line, column)
    return value


def _datetime_s(label: str, line: int, column: str, text: str) -> tuple[int, float]:
    """(day ordinal, seconds of day) of ``YYYY-MM-DD HH:MM:SS[.fffffff]`` (any fraction digits).

    Kept apart so that re-basing on the first row keeps all 7 fraction digits (seconds since
    year 1 in one float64 would keep only ~8 us).
    """
    try:
        day_text, _, clock = text.strip().replace("T", " ").partition(" ")
        day = dt.date.fromisoformat(day_text).toordinal()
        hours, minutes, seconds = clock.split(":")
        sec = float(seconds)
        hour, minute = int(hours), int(minutes)
        if not (0 <= hour < 24 and 0 <= minute < 60 and 0 <= sec < 61):
            raise ValueError(text)
    except ValueError:
        raise TraceError(label, f"{text!r} is not a datetime like '2023-11-16 18:17:03.9799600'",
                         line, column) from None
    return day, hour * 3600.0 + minute * 60.0 + sec


def _read_requests(reader: Any, label: str, name: str, columns: tuple[str, ...], *,
                   datetimes: bool) -> RequestTrace:
    time_col, prompt_col, output_col = columns
    times: list[float] = []
    prompts: list[int] = []
    outputs: list[int] = []
    previous = -math.inf
    first_day: int | None = None
    for line, (t_text, p_text, o_text) in _rows(reader, label, 3):
        if datetimes:
            day, second = _datetime_s(label, line, time_col, t_text)
            if first_day is None:
                first_day = day
            t = (day - first_day) * 86400.0 + second
        else:
            t = _number(label, line, time_col, t_text)
        if t < previous:
            raise TraceError(label, f"{t_text.strip()!r} is earlier than the previous row",
                             line, time_col)
        previous = t
        times.append(t)
        prompts.append(_count(label, line, prompt_col, p_text))
        outputs.append(_count(label, line, output_col, o_text))
    if not times:
        raise TraceError(label, "no data rows", line=2)
    arrival = np.asarray(times, dtype=np.float64)
    if datetimes:
        arrival = arrival - arrival[0]  # the first request arrives at 0 s
    return RequestTrace(name, arrival, np.asarray(prompts, dtype=np.int64),
                        np.asarray(outputs, dtype=np.int64))


def _read_rates(reader: Any, label: str, name: str, columns: tuple[str, ...]) -> RateTrace:
    has_tokens = len(columns) == 4
    starts: list[float] = []
    rates: list[float] = []
    prompts: list[float] = []
    outputs: list[float] = []
    step: float | None = None
    for line, row in _rows(reader, label, len(columns)):
        start = _number(label, line, columns[0], row[0])
        if starts:
            gap = start - starts[-1]
            if gap <= 0:
                raise TraceError(label, f"{row[0].strip()!r} is not after the previous row",
                                 line, columns[0])
            if step is None:
                step = gap
            elif abs(gap - step) > 1e-6 * step:
                raise TraceError(label, f"{row[0].strip()!r} breaks the {step:g} s step of the "
                                 "previous rows", line, columns[0])
        starts.append(start)
        rates.append(_number(label, line, columns[1], row[1]))
        for cells, index in ((prompts, 2), (outputs, 3)):
            text = row[index].strip() if has_tokens else ""
            cells.append(math.nan if not text
                         else _number(label, line, columns[index], text))
    if not starts:
        raise TraceError(label, "no data rows", line=2)
    if step is None:
        raise TraceError(label, "a rate trace needs at least two rows to give its step", line=2)
    rate = np.asarray(rates, dtype=np.float64)
    holes = _holes(rate)
    return RateTrace(
        name=name,
        step_s=step,
        start_s=np.asarray(starts, dtype=np.float64),
        rate=_interpolated(rate, holes),
        mean_prompt=_interpolated(_fill_means(np.asarray(prompts), rate, DEFAULT_MEAN_PROMPT),
                                  holes),
        mean_output=_interpolated(_fill_means(np.asarray(outputs), rate, DEFAULT_MEAN_OUTPUT),
                                  holes),
        gap_windows=int(holes.sum()),
    )


def _holes(rate: FloatArray) -> npt.NDArray[np.bool_]:
    """Exact-zero windows with a non-zero window somewhere before and after them."""
    busy = np.flatnonzero(rate > 0)
    inside = np.zeros(rate.size, dtype=np.bool_)
    if busy.size >= 2:
        inside[busy[0]:busy[-1] + 1] = True
    holes: npt.NDArray[np.bool_] = (rate == 0) & inside
    return holes


def _interpolated(values: FloatArray, holes: npt.NDArray[np.bool_]) -> FloatArray:
    """``values`` with the holes filled linearly from the nearest windows around them."""
    if not holes.any():
        return values
    index = np.arange(values.size)
    filled = values.copy()
    filled[holes] = np.interp(index[holes], index[~holes], values[~holes])
    return filled


def describe(trace: RequestTrace | RateTrace) -> str:
    """One line on what the replay is fed, saying which windows were read as holes."""
    if isinstance(trace, RequestTrace):
        return f"{trace.name}: {len(trace):,} requests over {trace.duration_s / 3600:.2f} h"
    text = (f"{trace.name}: {len(trace):,} windows of {trace.step_s:g} s over "
            f"{trace.duration_s / 3600:.1f} h")
    if trace.gap_windows:
        text += (f"; {trace.gap_windows} exact-zero window(s) inside read as collection holes "
                 "(rate and lengths interpolated, for every policy alike)")
    return text


def _fill_means(values: FloatArray, rate: FloatArray, default: float) -> FloatArray:
    """Empty (NaN) cells -> the rate-weighted mean of the filled ones, else ``default``."""
    known = ~np.isnan(values)
    if known.all():
        return values
    if not known.any():
        fill = default
    elif rate[known].sum() > 0:
        fill = float(np.average(values[known], weights=rate[known]))
    else:
        fill = float(values[known].mean())
    return np.where(known, values, fill)


# --------------------------------------------------------------------------- scaling


def scale(trace: RequestTrace | RateTrace, factor: float, *, seed: int = 0
          ) -> RequestTrace | RateTrace:
    """A copy with ``factor`` times the request rate, named e.g. ``azure_llm_code_2023 x0.25``."""
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"scale factor must be a finite number > 0, got {factor!r}")
    name = f"{trace.name} x{factor:g}"
    if isinstance(trace, RateTrace):
        return RateTrace(name, trace.step_s, trace.start_s.copy(), trace.rate * factor,
                         trace.mean_prompt.copy(), trace.mean_output.copy(), trace.gap_windows)
    return _scale_requests(trace, factor, name, np.random.default_rng(seed))


def _scale_requests(trace: RequestTrace, factor: float, name: str,
                    rng: np.random.Generator) -> RequestTrace:
    n = len(trace)
    if factor <= 1.0:
        keep = rng.random(n) < factor
        return RequestTrace(name, trace.arrival_s[keep], trace.prompt_tokens[keep],
                            trace.output_tokens[keep])
    # Superpose independent streams: each extra copy is the trace shifted circularly by a
    # seeded offset (the last copy thinned to the fractional part). Copies near their source
    # would multiply every burst by the factor; shifted ones keep the burst structure.
    extra = factor - 1.0
    duration = max(trace.duration_s, 1e-9)
    sources, arrivals = [], []
    for k in range(math.ceil(extra)):
        share = min(1.0, extra - k)
        picked = np.flatnonzero(rng.random(n) < share)
        offset = rng.uniform(0.0, duration)
        sources.append(picked)
        arrivals.append((trace.arrival_s[picked] - trace.arrival_s[0] + offset) % duration
                        + trace.arrival_s[0])
    source = np.concatenate(sources) if sources else np.empty(0, dtype=np.int64)
    arrival = np.concatenate(arrivals) if arrivals else np.empty(0)
    all_arrival = np.concatenate([trace.arrival_s, arrival])
    all_source = np.concatenate([np.arange(n), source])
    order = np.argsort(all_arrival, kind="stable")
    return RequestTrace(name, all_arrival[order], trace.prompt_tokens[all_source[order]],
                        trace.output_tokens[all_source[order]])
