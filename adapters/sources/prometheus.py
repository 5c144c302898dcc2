"""Prometheus as memory: a workload's demand history through the HTTP API's ``query_range``.

Used once per workload on first contact to warm-start its forecaster, so a restarted (or
an extra) scaler predicts well at once instead of relearning a week. One range query per
workload, split into chunks below Prometheus' 11,000-points-per-series limit. Every failure
is a ``PrometheusError`` with a message that says what to check; callers treat it as "no
history" and carry on (the RPCs never depend on Prometheus). That includes answers this
reader cannot use: one too large (read at most ``MAX_ANSWER_BYTES``, as metrics pages are
capped: a query matching far more than meant must not take the process's memory), not JSON,
or JSON of another shape.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

MAX_POINTS = 11_000  # Prometheus refuses range queries with more points per series
MAX_ANSWER_BYTES = 16 * 2**20  # an answer is parsed whole: ~10x its size in objects
_CHUNK = 64 * 1024
_UNUSABLE = (TypeError, ValueError, AttributeError, IndexError, KeyError)


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
    body, status = await get_json(session, url, params, timeout_s=timeout_s)
    try:
        return _samples(body, status, url, query)
    except _UNUSABLE as exc:
        raise PrometheusError(f"GET {url} answered a result this reader cannot use ({exc}); "
                              f"query: {query}") from None


async def get_json(session: aiohttp.ClientSession, url: str, params: Mapping[str, str], *,
                   timeout_s: float, max_bytes: int = MAX_ANSWER_BYTES) -> tuple[Any, int]:
    """The JSON answer of a GET and its HTTP status; PrometheusError when it cannot be had:
    unreachable, too slow, over ``max_bytes`` (never read further) or not JSON."""
    try:
        async with session.get(url, params=params,
                               timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            declared = resp.content_length
            if declared is not None and declared > max_bytes:
                raise _too_large(url, f"declares {declared} bytes", max_bytes)
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.content.iter_chunked(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise _too_large(url, f"sent more than {max_bytes} bytes", max_bytes)
                chunks.append(chunk)
            status = resp.status
    except TimeoutError as exc:
        raise PrometheusError(f"GET {url} timed out after {timeout_s:g} s; is Prometheus "
                              "overloaded or the query too wide?") from exc
    except aiohttp.ClientError as exc:
        raise PrometheusError(f"GET {url} failed: {exc}; is prometheus.url right?") from exc
    try:
        return json.loads(b"".join(chunks)), status
    except (ValueError, RecursionError) as exc:
        raise PrometheusError(f"GET {url} answered HTTP {status} with a body that is not JSON "
                              f"({type(exc).__name__}); is prometheus.url Prometheus?") from None


def _too_large(url: str, what: str, max_bytes: int) -> PrometheusError:
    return PrometheusError(f"GET {url} {what}, over the {max_bytes}-byte limit for one answer;"
                           " does the query match far more series than meant?")


def _samples(body: Any, status: int, url: str, query: str) -> list[tuple[float, float]]:
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else None
        reason = error or "not a Prometheus API response"
        raise PrometheusError(f"GET {url} answered HTTP {status}: {reason} (query: {query})")
    data = body.get("data") or {}
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
