"""A workload's own history as a replay trace: ``scaler export-trace`` from Prometheus.

Tuning starts from one's own traffic: this reads a workload's request rate and mean prompt and
output lengths from the vLLM counters Prometheus has kept, one point per ``step_s`` window,
and writes the rate-trace CSV ``scaler replay`` and ``scaler bench`` read
(``timestamp_s,requests_per_s,mean_input_tokens,mean_output_tokens``, time from 0). Three
range queries, with the workload's series ``selector``::

    sum(rate(vllm:request_success_total{<selector>}[<step>s]))
    sum(rate(vllm:prompt_tokens_total{<selector>}[<step>s]))
    sum(rate(vllm:generation_tokens_total{<selector>}[<step>s]))

A window without requests has no mean length: its token cells stay empty (the trace reader
fills them with the trace's mean). A window Prometheus has no data for (no pod scraped) is
left out, so the replay sees a gap, not zero demand.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from adapters.sources.prometheus import Series, query_range

COUNTERS = {
    "requests": "vllm:request_success_total",
    "prompt_tokens": "vllm:prompt_tokens_total",
    "output_tokens": "vllm:generation_tokens_total",
}
HEADER = ("timestamp_s", "requests_per_s", "mean_input_tokens", "mean_output_tokens")


@dataclass(frozen=True)
class TraceRow:
    timestamp_s: float
    requests_per_s: float
    mean_input_tokens: float | None
    mean_output_tokens: float | None


def queries(selector: str, step_s: float) -> dict[str, str]:
    """The three range queries (see the module docstring) for ``selector``'s series."""
    window = f"{max(1, round(step_s))}s"
    return {key: f"sum(rate({name}{{{selector}}}[{window}]))" for key, name in COUNTERS.items()}


def trace_rows(series: Mapping[str, Series]) -> list[TraceRow]:
    """One row per time the request rate has a value, time re-based to 0."""
    requests = series["requests"]
    prompt = dict(zip(series["prompt_tokens"].times_s, series["prompt_tokens"].values,
                      strict=True))
    output = dict(zip(series["output_tokens"].times_s, series["output_tokens"].values,
                      strict=True))
    if not requests.times_s:
        return []
    start = requests.times_s[0]
    return [TraceRow(t - start, rate, _mean(prompt.get(t), rate), _mean(output.get(t), rate))
            for t, rate in zip(requests.times_s, requests.values, strict=True)]


def _mean(tokens_per_s: float | None, requests_per_s: float) -> float | None:
    if tokens_per_s is None or requests_per_s <= 0:
        return None
    return tokens_per_s / requests_per_s


def write_trace(rows: Sequence[TraceRow], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(HEADER)
        for r in rows:
            out.writerow([f"{r.timestamp_s:.3f}", f"{r.requests_per_s:.4f}",
                          "" if r.mean_input_tokens is None else f"{r.mean_input_tokens:.1f}",
                          "" if r.mean_output_tokens is None else f"{r.mean_output_tokens:.1f}"])


async def export_trace(base_url: str, selector: str, *, start_s: float, end_s: float,
                       step_s: float = 600.0, timeout_s: float = 30.0) -> list[TraceRow]:
    """Read the history from Prometheus (raises ``PrometheusError`` saying what to check)."""
    async with aiohttp.ClientSession() as session:
        series = {key: await query_range(session, base_url, query, start_s=start_s,
                                         end_s=end_s, step_s=step_s, timeout_s=timeout_s)
                  for key, query in queries(selector, step_s).items()}
    return trace_rows(series)
