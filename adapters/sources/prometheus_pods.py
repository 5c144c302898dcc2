"""Prometheus as a metrics source: each pod's latest vLLM samples, read with one query.

Where Prometheus already scrapes the inference pods, the scaler can read what it holds
instead of scraping every pod itself. One instant query per workload and interval asks for
the raw samples of exactly the series the page reader uses, over a short lookback::

    {__name__=~"vllm:num_requests_waiting|vllm:num_requests_running|...",
     namespace="llm", pod=~"llama-0|llama-1"}[60s]

A range selector (not ``last_over_time``, which drops the metric name) returns each series'
samples with the time Prometheus scraped them; the newest one per series is kept and the
series are grouped by pod into the same ``ParsedPage`` a scraped page gives, so the rest of
the service cannot tell the two sources apart. The scrape time matters: counters turn into
rates over the time between two Prometheus scrapes, not between two of our reads.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from adapters.formats.promql import escape
from adapters.formats.promtext import ParsedPage, Sample
from adapters.sources.prometheus import PrometheusError, get_json

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


@dataclass(frozen=True)
class PodSamples:
    """One pod's newest samples, as a page, and when Prometheus scraped the newest of them."""

    page: ParsedPage
    scraped_s: float  # epoch seconds


def samples_query(names: Iterable[str], matchers: str, lookback_s: float) -> str:
    """The range-selector query for ``names`` among the series ``matchers`` select.

    ``matchers`` is PromQL label matchers without braces, e.g. ``namespace="llm",job="vllm"``.
    """
    ordered = sorted(names)
    for name in ordered:
        if not _NAME.match(name):
            raise ValueError(f"{name!r} is not a Prometheus metric name")
    inner = f'__name__=~"{"|".join(ordered)}"'
    if matchers.strip():
        inner += "," + matchers.strip().strip(",")
    return f"{{{inner}}}[{max(1, math.ceil(lookback_s))}s]"


def pod_matchers(namespace: str, pods: Iterable[str], pod_label: str = "pod") -> str:
    """Matchers for the named pods of one namespace.

    Names are escaped twice: for the regex (a ``.`` in a name is literal), then for the
    PromQL string literal the regex sits in; the namespace for the string literal.
    """
    alternation = "|".join(escape(re.escape(p)) for p in sorted(pods))
    return f'namespace="{escape(namespace)}",{pod_label}=~"{alternation}"'


async def query_pod_samples(session: aiohttp.ClientSession, base_url: str, query: str, *,
                            pod_label: str = "pod",
                            timeout_s: float = 5.0) -> dict[str, PodSamples]:
    """Run ``query`` (from ``samples_query``) and group the newest samples by pod.

    Series without the ``pod_label`` label are skipped (they cannot be told apart).
    Raises PrometheusError when Prometheus cannot be reached or refuses the query.
    """
    url = base_url.rstrip("/") + "/api/v1/query"
    body, status = await get_json(session, url, {"query": query}, timeout_s=timeout_s)
    try:
        return group_by_pod(_matrix(body, status, url, query), pod_label)
    except (TypeError, ValueError, AttributeError, IndexError, KeyError) as exc:
        raise PrometheusError(f"GET {url} answered a result this reader cannot use ({exc}); "
                              f"query: {query}") from exc


def _matrix(body: Any, status: int, url: str, query: str) -> list[Mapping[str, Any]]:
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else None
        raise PrometheusError(f"GET {url} answered HTTP {status}: "
                              f"{error or 'not a Prometheus API response'} (query: {query})")
    data = body.get("data") or {}
    if data.get("resultType") != "matrix":
        raise PrometheusError(f"query {query!r} gave a {data.get('resultType')}, not raw "
                              "samples; the query must end in a range like [60s]")
    result = data.get("result")
    if not isinstance(result, list):
        raise PrometheusError(f"query {query!r} gave a result that is not a list")
    return result


def group_by_pod(series: Iterable[Mapping[str, Any]],
                 pod_label: str = "pod") -> dict[str, PodSamples]:
    """The newest sample of each series, grouped into one page per pod.

    A pod is read from one scrape target only, the one Prometheus scraped most recently
    (``job`` and ``instance``): two jobs scraping the same pod, or the series a recreated pod
    left behind under its old address, are not added in.
    """
    latest: dict[str, dict[tuple[str, str], list[Sample]]] = {}
    newest: dict[tuple[str, tuple[str, str]], float] = {}
    for one in series:
        labels = dict(one.get("metric") or {})
        name, pod = labels.pop("__name__", None), labels.get(pod_label)
        values = one.get("values") or []
        if not name or not pod or not values:
            continue
        t, raw = values[-1]
        target = (labels.get("job", ""), labels.get("instance", ""))
        latest.setdefault(pod, {}).setdefault(target, []).append(Sample(name, labels, float(raw)))
        key = (pod, target)
        newest[key] = max(newest.get(key, -math.inf), float(t))
    found = {}
    for pod, targets in latest.items():
        target = max(targets, key=lambda tg: newest[pod, tg])
        page = ParsedPage({}, [])
        for sample in targets[target]:
            page.samples.setdefault(sample.name, []).append(sample)
        found[pod] = PodSamples(page, newest[pod, target])
    return found
