"""Prometheus as memory: a workload's demand history through the HTTP API's ``query_range``.

Used once per workload on first contact to warm-start its forecaster, so a restarted (or
an extra) scaler predicts well at once instead of relearning a week. One range query per
workload, split into chunks below Prometheus' 11,000-points-per-series limit. Every failure
is a ``PrometheusError`` with a message that says what to check; callers treat it as "no
history" and carry on (the RPCs never depend on Prometheus).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import aiohttp

MAX_POINTS = 11_000  # Prometheus refuses range queries with more points per series


class PrometheusError(Exception):
    pass


@dataclass(frozen=True)
class Series:
    times_s: tuple[float, ...]  # epoch seconds
    values: tuple[float, ...]


async def query_range(session: aiohttp.ClientSession, base_url: str, query: str, *,
                      start_s: float, end_s: float, step_s: float,
                      timeout_s: float = 10.0) -> Series:
    """The query's single series over [start, end] at ``step_s``; several series are summed."""
    if not (step_s > 0 and end_s >= start_s):
        raise ValueError(f"bad range: start {start_s}, end {end_s}, step {step_s}")
    points: dict[float, float] = {}
    chunk = step_s * (MAX_POINTS - 1)
    begin = start_s
    while begin <= end_s:
        stop = min(end_s, begin + chunk)
        for t, v in await _fetch(session, base_url, query, begin, stop, step_s, timeout_s):
            points[t] = points.get(t, 0.0) + v
        begin = stop + step_s
    ordered = sorted(points.items())
    return Series(tuple(t for t, _ in ordered), tuple(v for _, v in ordered))


async def _fetch(session: aiohttp.ClientSession, base_url: str, query: str, start_s: float,
                 end_s: float, step_s: float, timeout_s: float) -> list[tuple[float, float]]:
    url = base_url.rstrip("/") + "/api/v1/query_range"
    params = {"query": query, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}",
              "step": f"{step_s:g}"}
    try:
        async with session.get(url, params=params,
                               timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            body = await resp.json(content_type=None)
            status = resp.status
    except TimeoutError as exc:
        raise PrometheusError(f"GET {url} timed out after {timeout_s:g} s; is Prometheus "
                              "overloaded or the history span too long?") from exc
    except (aiohttp.ClientError, ValueError) as exc:
        raise PrometheusError(f"GET {url} failed: {exc}; is prometheus.url right?") from exc
    return _samples(body, status, url, query)


def _samples(body: Any, status: int, url: str, query: str) -> list[tuple[float, float]]:
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else None
        reason = error or "not a Prometheus API response"
        raise PrometheusError(f"GET {url} answered HTTP {status}: {reason} (query: {query})")
    data = body.get("data", {})
    if data.get("resultType") != "matrix":
        raise PrometheusError(f"query {query!r} gave a {data.get('resultType')}, "
                              "not a range vector")
    out: list[tuple[float, float]] = []
    for series in data.get("result", []):
        for t, v in series.get("values", []):
            value = float(v)
            if math.isfinite(value):
                out.append((float(t), value))
    return out
