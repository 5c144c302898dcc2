"""One inference server ``/metrics`` page -> one pod snapshot (vLLM, SGLang, TGI).

Why a snapshot and not raw samples: the rest of the scaler wants per-pod numbers (queue,
running, KV-cache use, counters, histograms) that mean the same thing across vLLM versions.
The page shape changed a lot between releases, and this module hides that:

- every series is summed over all labels except ``le`` (``engine`` from 0.8.3 — one series
  per data-parallel engine —, ``finished_reason``, ``pid``, ...): label sets are open;
- KV-cache use is ``vllm:kv_cache_usage_perc`` (0.9.2+) else ``vllm:gpu_cache_usage_perc``
  (gone in 0.12), and it is the MEAN over engines: each engine has its own cache of the same
  size, so a sum of fractions would be wrong;
- prefix cache counters are ``vllm:prefix_cache_*_total`` else ``vllm:gpu_prefix_cache_*_total``
  (blocks in 0.7, tokens later: use their ratio, not their absolute value);
- inter-token latency is ``inter_token_latency_seconds`` else the older
  ``time_per_output_token_seconds``;
- histogram bounds are read from ``le`` on the page (they changed across versions and can be
  customised), never assumed.

A histogram cut before its ``+Inf`` bucket (a truncated page, like the V0 fixture) is kept
with bounds up to its last bucket; its ``count`` is then the ``_count`` sample when present,
else the last cumulative bucket (a lower bound), and a missing ``_sum`` reads as NaN, so the
mean is unknown rather than wrong. Quantiles from such a histogram cap at its last bound.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from adapters.formats.promtext import PageError, ParsedPage, Sample, parse, parse_value

__all__ = [
    "SGLANG_SAMPLE_NAMES",
    "TGI_SAMPLE_NAMES",
    "VLLM_SAMPLE_NAMES",
    "HistogramSnapshot",
    "PageError",
    "Server",
    "VllmSnapshot",
    "read_page",
    "read_vllm",
]

Server = Literal["vllm", "sglang", "tgi"]


@dataclass(frozen=True)
class HistogramSnapshot:
    """A histogram summed over series: ascending upper bounds (``inf`` last when on the page)."""

    bounds: tuple[float, ...]
    cumulative: tuple[float, ...]
    sum: float
    count: float


@dataclass(frozen=True)
class VllmSnapshot:
    """What one scrape of one pod says, in version-independent terms."""

    waiting: float
    running: float
    kv_cache_usage: float | None
    counters: Mapping[str, float]
    histograms: Mapping[str, HistogramSnapshot]
    model_names: frozenset[str]
    bad_lines: int


@dataclass(frozen=True)
class _ServerSpec:
    """Sample names of one server; each key lists candidates in order of preference."""

    label: str
    waiting: str
    running: str
    kv: tuple[str, ...]
    counters: Mapping[str, tuple[str, ...]]
    histograms: Mapping[str, tuple[str, ...]]

    def sample_names(self, histograms: frozenset[str] | None = None) -> frozenset[str]:
        """Names read; ``histograms`` limits the histograms to those keys (None: all)."""
        names = {self.waiting, self.running, *self.kv}
        for candidates in self.counters.values():
            names.update(candidates)
        for key, candidates in self.histograms.items():
            if histograms is not None and key not in histograms:
                continue
            for base in candidates:
                names.update((base + "_bucket", base + "_sum", base + "_count"))
        return frozenset(names)


_VLLM = _ServerSpec(
    label="vLLM",
    waiting="vllm:num_requests_waiting",
    running="vllm:num_requests_running",
    kv=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    counters={
        "prompt_tokens": ("vllm:prompt_tokens_total",),
        "generation_tokens": ("vllm:generation_tokens_total",),
        "request_success": ("vllm:request_success_total",),
        "preemptions": ("vllm:num_preemptions_total",),
        "prefix_cache_queries": ("vllm:prefix_cache_queries_total",
                                 "vllm:gpu_prefix_cache_queries_total"),
        "prefix_cache_hits": ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
    },
    histograms={
        "ttft": ("vllm:time_to_first_token_seconds",),
        "itl": ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
        "e2e": ("vllm:e2e_request_latency_seconds",),
        "queue_time": ("vllm:request_queue_time_seconds",),
    },
)

# SGLang names as in sglang/srt/metrics/collector.py; ``token_usage`` is a 0-1 fraction.
_SGLANG = _ServerSpec(
    label="SGLang",
    waiting="sglang:num_queue_reqs",
    running="sglang:num_running_reqs",
    kv=("sglang:token_usage",),
    counters={
        "prompt_tokens": ("sglang:prompt_tokens_total",),
        "generation_tokens": ("sglang:generation_tokens_total",),
    },
    histograms={
        "ttft": ("sglang:time_to_first_token_seconds",),
        "itl": ("sglang:inter_token_latency_seconds", "sglang:time_per_output_token_seconds"),
        "e2e": ("sglang:e2e_request_latency_seconds",),
    },
)

# TGI (Rust ``metrics`` exporter: counters keep their bare name, no ``_total``); no KV gauge.
_TGI = _ServerSpec(
    label="TGI",
    waiting="tgi_queue_size",
    running="tgi_batch_current_size",
    kv=(),
    counters={"request_success": ("tgi_request_success",)},
    histograms={
        "e2e": ("tgi_request_duration",),
        "queue_time": ("tgi_request_queue_duration",),
        "itl": ("tgi_request_mean_time_per_token_duration",),
    },
)

_SPECS: Mapping[str, _ServerSpec] = {"vllm": _VLLM, "sglang": _SGLANG, "tgi": _TGI}

VLLM_SAMPLE_NAMES: frozenset[str] = _VLLM.sample_names()
SGLANG_SAMPLE_NAMES: frozenset[str] = _SGLANG.sample_names()
TGI_SAMPLE_NAMES: frozenset[str] = _TGI.sample_names()
_NAMES: Mapping[str, frozenset[str]] = {
    "vllm": VLLM_SAMPLE_NAMES, "sglang": SGLANG_SAMPLE_NAMES, "tgi": TGI_SAMPLE_NAMES}


def _model_names(page: ParsedPage) -> frozenset[str]:
    return frozenset(s.labels["model_name"] for samples in page.samples.values()
                     for s in samples if "model_name" in s.labels)


def _select(page: ParsedPage, name: str, model_name: str | None) -> list[Sample]:
    """Samples of ``name``; with a model, those whose ``model_name`` label differs are dropped.

    Samples without a ``model_name`` label (TGI pages) are kept.
    """
    samples = page.get(name)
    if model_name is None:
        return samples
    return [s for s in samples if s.labels.get("model_name", model_name) == model_name]


def _series_text(sample: Sample) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sample.labels.items())
    return f"{sample.name}{{{inner}}}" if inner else sample.name


def _checked_gauge(samples: list[Sample], what: str) -> list[float]:
    """Values of a gauge that must be a number >= 0; PageError names the offending series."""
    for sample in samples:
        if not math.isfinite(sample.value) or sample.value < 0:
            raise PageError(f"{_series_text(sample)} is {sample.value!r}: {what} must be a "
                            "finite number >= 0; is the server healthy?")
    return [s.value for s in samples]


def _finite_sum(values: list[float], what: str) -> float:
    """The sum of a page's values; PageError when it leaves the float range."""
    try:
        total = math.fsum(values)
    except OverflowError:
        total = math.inf
    if not math.isfinite(total):
        raise PageError(f"{what} sums to more than a float holds; is the server healthy?")
    return total


def _first_present(page: ParsedPage, candidates: tuple[str, ...],
                   model_name: str | None) -> list[Sample]:
    for name in candidates:
        samples = _select(page, name, model_name)
        if samples:
            return samples
    return []


def _read_counters(page: ParsedPage, spec: _ServerSpec,
                   model_name: str | None) -> dict[str, float]:
    counters: dict[str, float] = {}
    for key, candidates in spec.counters.items():
        samples = _first_present(page, candidates, model_name)
        total = _sum_or_nan([s.value for s in samples])
        if samples and math.isfinite(total):  # an unusable counter is left out, not fatal
            counters[key] = total
    return counters


def _sum_or_nan(values: list[float]) -> float:
    try:
        return math.fsum(values)
    except (OverflowError, ValueError):  # +inf and -inf together, or past the float range
        return math.nan


def _read_histogram(page: ParsedPage, base: str,
                    model_name: str | None) -> tuple[HistogramSnapshot | None, int]:
    """Sum one histogram's series by ``le``; returns (snapshot or None, unreadable ``le`` count)."""
    buckets = _select(page, base + "_bucket", model_name)
    sums = _select(page, base + "_sum", model_name)
    counts = _select(page, base + "_count", model_name)
    if not (buckets or sums or counts):
        return None, 0
    by_bound: dict[float, float] = {}
    bad = 0
    for sample in buckets:
        bound = parse_value(sample.labels.get("le", ""))
        if bound is None or math.isnan(bound):
            bad += 1
            continue
        by_bound[bound] = by_bound.get(bound, 0.0) + sample.value
    bounds = tuple(sorted(by_bound))
    cumulative = tuple(by_bound[b] for b in bounds)
    total = _sum_or_nan([s.value for s in sums]) if sums else math.nan
    fallback_count = cumulative[-1] if cumulative else 0.0
    count = _sum_or_nan([s.value for s in counts]) if counts else fallback_count
    return HistogramSnapshot(bounds, cumulative, total, count), bad


def _read_histograms(page: ParsedPage, spec: _ServerSpec, model_name: str | None,
                     keys: frozenset[str] | None) -> tuple[dict[str, HistogramSnapshot], int]:
    histograms: dict[str, HistogramSnapshot] = {}
    bad_total = 0
    for key, candidates in spec.histograms.items():
        if keys is not None and key not in keys:
            continue
        for base in candidates:
            snapshot, bad = _read_histogram(page, base, model_name)
            bad_total += bad
            if snapshot is not None:
                histograms[key] = snapshot
                break
    return histograms, bad_total


def _read_kv(page: ParsedPage, spec: _ServerSpec, model_name: str | None) -> float | None:
    samples = _first_present(page, spec.kv, model_name)
    if not samples:
        return None
    values = _checked_gauge(samples, "KV-cache use")
    return _finite_sum(values, "KV-cache use") / len(values)


def _queue_gauges(page: ParsedPage, spec: _ServerSpec,
                  model_name: str | None) -> tuple[float, float]:
    if not page.get(spec.waiting) and not page.get(spec.running):
        raise PageError(f"no {spec.waiting} or {spec.running} on the page: is this a "
                        f"{spec.label} /metrics endpoint?")
    waiting = _select(page, spec.waiting, model_name)
    running = _select(page, spec.running, model_name)
    if not waiting and not running:
        raise PageError(f"no {spec.waiting} or {spec.running} series with "
                        f"model_name={model_name!r}; the page serves "
                        f"{sorted(_model_names(page))}: check the configured model name")
    return (_finite_sum(_checked_gauge(waiting, "a queue length"), spec.waiting),
            _finite_sum(_checked_gauge(running, "a running-request count"), spec.running))


def read_page(text: str, *, server: Server = "vllm", model_name: str | None = None,
              histograms: frozenset[str] | None = None) -> VllmSnapshot:
    """Read one ``/metrics`` page of ``server`` into a snapshot (see the module docstring).

    ``histograms`` names the histograms to read (``{"ttft"}``: the scaler's hot path skips
    the others, half the parsing); None reads all. A missing waiting (or running) gauge
    reads as 0 when the other one is on the page. Raises PageError when neither is on the
    page, when ``model_name`` matches no series, or when a gauge that must be >= 0 is
    negative or not finite.
    """
    if server not in _SPECS:
        raise ValueError(f"unknown server {server!r}; expected one of {sorted(_SPECS)}")
    return read_samples(parse(text, sample_names(server, histograms)), server=server,
                        model_name=model_name, histograms=histograms)


def sample_names(server: Server, histograms: frozenset[str] | None = None) -> frozenset[str]:
    """Every sample name the reader of ``server`` uses (to ask Prometheus for just these)."""
    if histograms is None:
        return _NAMES[server]
    return _names_for(server, histograms)


@lru_cache(maxsize=32)
def _names_for(server: Server, histograms: frozenset[str]) -> frozenset[str]:
    return _SPECS[server].sample_names(histograms)


def read_samples(page: ParsedPage, *, server: Server = "vllm", model_name: str | None = None,
                 histograms: frozenset[str] | None = None) -> VllmSnapshot:
    """As ``read_page``, for samples already parsed (or read from Prometheus)."""
    spec = _SPECS[server]
    waiting, running = _queue_gauges(page, spec, model_name)
    read, bad_le = _read_histograms(page, spec, model_name, histograms)
    return VllmSnapshot(
        waiting=waiting,
        running=running,
        kv_cache_usage=_read_kv(page, spec, model_name),
        counters=_read_counters(page, spec, model_name),
        histograms=read,
        model_names=_model_names(page),
        bad_lines=len(page.bad_lines) + bad_le,
    )


def read_vllm(text: str, *, model_name: str | None = None) -> VllmSnapshot:
    """Read one vLLM ``/metrics`` page (any version from 0.6 to 0.12) into a snapshot."""
    return read_page(text, server="vllm", model_name=model_name)
