"""Render real-format vLLM ``/metrics`` pages for the emulated vLLM pod.

Why: tests, the demo and the benchmarks have no GPU and no vLLM, yet the adapters must be
exercised on pages that look exactly like the ones vLLM serves in each version the scaler
supports: same family names, HELP/TYPE lines, label sets and order, bucket bounds and number
formatting. Everything here was written for this project from the facts below.

Facts relied on (read from vllm-project/vllm ``vllm/engine/metrics.py`` (V0) and
``vllm/v1/metrics/loggers.py`` (V1) at several points in history, and from real pages quoted in
vLLM, production-stack and aibrix issues/docs):

- Pages are written by prometheus_client: label names sorted (``engine`` < ``le`` <
  ``model_name``), histogram samples ``_bucket`` ... ``+Inf``, ``_count``, ``_sum``, floats in
  Go style (``1.0``, ``1.7382173358407154e+09``); every counter and histogram is followed by a
  separate ``<name>_created`` gauge family with the same HELP (V1 only: V0 called
  ``disable_created_metrics()``), and the default registry puts ``python_gc_*``,
  ``python_info`` and ``process_*`` first.
- 0.6 (V0 engine, multiprocess registry): no python/process families, ``model_name`` label
  only, ``_sum`` before the buckets (as in the aibrix fixture), ``num_requests_swapped``,
  ``cpu_cache_usage_perc``, ``{cpu,gpu}_prefix_cache_hit_rate`` (-1 when unused),
  ``lora_requests_info``, ``time_in_queue_requests``, ``model_{forward,execute}_time_milliseconds``
  (1-2-3-5-8 buckets up to 3000), iteration-token buckets = CUDA-graph capture sizes (1, 2, 4,
  8, 16, ... 256), ``request_success_total`` only for finish reasons seen so far.
- 0.7 (early V1): ``model_name`` only, ``gpu_cache_usage_perc``, ``gpu_prefix_cache_*_total``
  counted in blocks, no ``num_preemptions`` yet (assumption: added in 0.8.0), V1
  iteration-token buckets 1, 8, 16, ... 16384.
- Short bucket sets (TTFT up to 10 s, TPOT up to 2.5 s, request latency up to 60 s) before
  PR #15202 (March 2025); from 0.8.3 on, TTFT adds 20-2560 s, TPOT/ITL 5-80 s and request
  latency 120-7680 s.
- 0.8.3: ``engine`` label added (one series per data-parallel engine), prefix cache counted in
  tokens, ``num_preemptions_total``.
- 0.9.2: ``kv_cache_usage_perc`` and ``prefix_cache_*_total`` added; the old
  ``gpu_cache_usage_perc`` / ``gpu_prefix_cache_*`` kept with a DEPRECATED HELP (the missing
  space in "usage.DEPRECATED" is vLLM's own).
- 0.12: only ``kv_cache_usage_perc`` and ``prefix_cache_*``; ``engine_sleep_state``,
  ``external_prefix_cache_*``, ``mm_cache_*``; ``inter_token_latency_seconds`` and
  ``request_time_per_output_token_seconds`` replace ``time_per_output_token_seconds``
  (hidden since 0.12).
- Pages before 0.8.3 have no ``engine`` label, so several engines are merged into one series
  there (counters, histograms, queue gauges summed; KV-cache use averaged).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

__all__ = [
    "FINISH_REASONS",
    "VLLM_VERSIONS",
    "EngineState",
    "Histogram",
    "bucket_bounds",
    "format_value",
    "render_page",
]

VLLM_VERSIONS = ("0.6", "0.7", "0.8.3", "0.9.2", "0.12")
FINISH_REASONS = ("stop", "length", "abort")
DEFAULT_MODEL = "meta-llama/Llama-3.1-8B-Instruct"

_TTFT_SHORT = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
               5.0, 7.5, 10.0)
_TTFT_LONG = (*_TTFT_SHORT, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
_TPOT_SHORT = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
_TPOT_LONG = (*_TPOT_SHORT, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
_LATENCY_SHORT = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
                  60.0)
_LATENCY_LONG = (*_LATENCY_SHORT, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
_ITERATION_V0 = (1.0, 2.0, 4.0, *(8.0 * i for i in range(1, 33)))
_ITERATION_V1 = (1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
                 8192.0, 16384.0)
_PARAMS_N = (1.0, 2.0, 5.0, 10.0, 20.0)


def _mantissa_buckets(mantissas: Sequence[int], max_value: int) -> tuple[float, ...]:
    """1-2-5 style bounds: each mantissa times 10**k, ascending, up to ``max_value``."""
    out: list[float] = []
    exponent = 0
    while True:
        for mantissa in mantissas:
            value = mantissa * 10**exponent
            if value > max_value:
                return tuple(out)
            out.append(float(value))
        exponent += 1


def bucket_bounds(version: str, histogram: str, max_model_len: int = 131072) -> tuple[float, ...]:
    """Upper bounds (without +Inf) vLLM ``version`` uses for one histogram of EngineState."""
    _check_version(version)
    early = version in ("0.6", "0.7")
    token_counts = _mantissa_buckets((1, 2, 5), max_model_len)
    table: dict[str, tuple[float, ...]] = {
        "ttft": _TTFT_SHORT if early else _TTFT_LONG,
        "itl": _TPOT_SHORT if early else _TPOT_LONG,
        "request_tpot": _TPOT_SHORT if early else _TPOT_LONG,
        "iteration_tokens": _ITERATION_V0 if version == "0.6" else _ITERATION_V1,
        "params_n": _PARAMS_N,
        "model_forward_ms": _mantissa_buckets((1, 2, 3, 5, 8), 3000),
        "model_execute_ms": _mantissa_buckets((1, 2, 3, 5, 8), 3000),
    }
    for name in ("e2e", "queue_time", "inference_time", "prefill_time", "decode_time"):
        table[name] = _LATENCY_SHORT if early else _LATENCY_LONG
    for name in ("request_prompt_tokens", "request_generation_tokens",
                 "request_max_generation_tokens", "params_max_tokens"):
        table[name] = token_counts
    if histogram not in table:
        raise ValueError(f"unknown histogram {histogram!r}; expected one of {sorted(table)}")
    return table[histogram]


def _check_version(version: str) -> None:
    if version not in VLLM_VERSIONS:
        raise ValueError(f"unknown vLLM version {version!r}; expected one of {VLLM_VERSIONS}")


class Histogram:
    """A Prometheus-style histogram: per-bucket counts, sum and count (no labels, no lock)."""

    __slots__ = ("_counts", "bounds", "count", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        values = tuple(float(b) for b in bounds)
        if not all(math.isfinite(b) for b in values):
            raise ValueError(f"histogram bounds must be finite (+Inf is implicit), got {values}")
        if any(b >= c for b, c in pairwise(values)):
            raise ValueError(f"histogram bounds must be strictly ascending, got {values}")
        self.bounds = values
        self._counts = [0.0] * (len(values) + 1)
        self.sum = 0.0
        self.count = 0.0

    def observe(self, value: float, n: float = 1.0) -> None:
        """Record ``n`` observations of ``value`` (``le`` semantics: value <= bound)."""
        self._counts[bisect_left(self.bounds, value)] += n
        self.sum += value * n
        self.count += n

    def cumulative(self) -> tuple[float, ...]:
        """Cumulative counts for each bound, then for +Inf (len(bounds) + 1 values)."""
        out: list[float] = []
        running = 0.0
        for count in self._counts:
            running += count
            out.append(running)
        return tuple(out)

    def merged(self, other: Histogram) -> Histogram:
        """A new histogram holding the observations of both (same bounds required)."""
        if other.bounds != self.bounds:
            raise ValueError("cannot merge histograms with different bounds")
        out = Histogram(self.bounds)
        out._counts = [a + b for a, b in zip(self._counts, other._counts, strict=True)]
        out.sum = self.sum + other.sum
        out.count = self.count + other.count
        return out


_HISTOGRAM_FIELDS = (
    "ttft", "itl", "request_tpot", "e2e", "queue_time", "inference_time", "prefill_time",
    "decode_time", "iteration_tokens", "request_prompt_tokens", "request_generation_tokens",
    "request_max_generation_tokens", "params_n", "params_max_tokens", "model_forward_ms",
    "model_execute_ms",
)


@dataclass
class EngineState:
    """One vLLM engine's mutable state, as its metrics show it.

    Histograms are created in ``__post_init__`` with the bounds of ``bucket_version`` (the
    bounds changed across vLLM releases); replace them to emulate custom buckets. ``itl`` is
    rendered as ``inter_token_latency_seconds`` (0.12) or ``time_per_output_token_seconds``.
    """

    running: int = 0
    waiting: int = 0
    swapped: int = 0
    kv_cache_usage: float = 0.0
    cpu_cache_usage: float = 0.0
    prompt_tokens: float = 0.0
    generation_tokens: float = 0.0
    preemptions: float = 0.0
    request_success: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(FINISH_REASONS, 0.0))
    prefix_cache_queries: float = 0.0
    prefix_cache_hits: float = 0.0
    created: float = 1_750_000_000.0
    max_model_len: int = 131072
    num_gpu_blocks: int = 27_000
    bucket_version: str = "0.12"
    ttft: Histogram = field(init=False)
    itl: Histogram = field(init=False)
    request_tpot: Histogram = field(init=False)
    e2e: Histogram = field(init=False)
    queue_time: Histogram = field(init=False)
    inference_time: Histogram = field(init=False)
    prefill_time: Histogram = field(init=False)
    decode_time: Histogram = field(init=False)
    iteration_tokens: Histogram = field(init=False)
    request_prompt_tokens: Histogram = field(init=False)
    request_generation_tokens: Histogram = field(init=False)
    request_max_generation_tokens: Histogram = field(init=False)
    params_n: Histogram = field(init=False)
    params_max_tokens: Histogram = field(init=False)
    model_forward_ms: Histogram = field(init=False)
    model_execute_ms: Histogram = field(init=False)

    def __post_init__(self) -> None:
        for name in _HISTOGRAM_FIELDS:
            bounds = bucket_bounds(self.bucket_version, name, self.max_model_len)
            setattr(self, name, Histogram(bounds))

    def record_step(self, prompt_tokens: int, generation_tokens: int) -> None:
        """One engine step: token counters and the iteration-tokens histogram."""
        self.prompt_tokens += prompt_tokens
        self.generation_tokens += generation_tokens
        self.iteration_tokens.observe(prompt_tokens + generation_tokens)

    def record_request(self, *, prompt_tokens: int, generation_tokens: int, queue_s: float,
                       ttft_s: float, e2e_s: float, finished_reason: str = "stop",
                       max_tokens: int | None = None) -> None:
        """One finished request: success counter and the per-request histograms.

        ``ttft_s`` and ``e2e_s`` count from arrival, so prefill = ttft - queue and
        decode = e2e - ttft; inter-token latency is spread evenly over the decode.
        """
        self.request_success[finished_reason] = self.request_success.get(finished_reason, 0) + 1
        decode_s = max(e2e_s - ttft_s, 0.0)
        self.e2e.observe(e2e_s)
        self.queue_time.observe(queue_s)
        self.ttft.observe(ttft_s)
        self.prefill_time.observe(max(ttft_s - queue_s, 0.0))
        self.decode_time.observe(decode_s)
        self.inference_time.observe(max(e2e_s - queue_s, 0.0))
        if generation_tokens > 1:
            per_token = decode_s / (generation_tokens - 1)
            self.itl.observe(per_token, generation_tokens - 1)
            self.request_tpot.observe(per_token)
        self.request_prompt_tokens.observe(prompt_tokens)
        self.request_generation_tokens.observe(generation_tokens)
        self.request_max_generation_tokens.observe(max_tokens or generation_tokens)
        self.params_n.observe(1)
        if max_tokens is not None:
            self.params_max_tokens.observe(max_tokens)
        self.model_forward_ms.observe(1000.0 * decode_s / max(generation_tokens, 1))
        self.model_execute_ms.observe(1000.0 * decode_s / max(generation_tokens, 1))


def _merge_engines(engines: Sequence[EngineState]) -> EngineState:
    """One engine standing for several (pages before 0.8.3 have no engine label)."""
    first = engines[0]
    out = EngineState(created=first.created, max_model_len=first.max_model_len,
                      num_gpu_blocks=first.num_gpu_blocks, bucket_version=first.bucket_version)
    for name in ("running", "waiting", "swapped", "prompt_tokens", "generation_tokens",
                 "preemptions", "prefix_cache_queries", "prefix_cache_hits"):
        setattr(out, name, sum(getattr(e, name) for e in engines))
    out.kv_cache_usage = sum(e.kv_cache_usage for e in engines) / len(engines)
    out.cpu_cache_usage = sum(e.cpu_cache_usage for e in engines) / len(engines)
    out.request_success = {}
    for engine in engines:
        for reason, count in engine.request_success.items():
            out.request_success[reason] = out.request_success.get(reason, 0.0) + count
    for name in _HISTOGRAM_FIELDS:
        merged: Histogram = getattr(first, name)
        for engine in engines[1:]:
            merged = merged.merged(getattr(engine, name))
        setattr(out, name, merged)
    return out


def format_value(value: float) -> str:
    """Format a float the way prometheus_client does (Go style: 1.0, 1.7e+09, +Inf, NaN)."""
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if math.isnan(value):
        return "NaN"
    text = repr(float(value))
    dot = text.find(".")
    if value > 0 and dot > 6:
        digits = (text[0] + "." + text[1:dot] + text[dot + 1:]).rstrip("0").rstrip(".")
        return f"{digits}e+{dot - 1:02d}"
    return text


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


Series = list[tuple[dict[str, str], float]]
HistSeries = list[tuple[dict[str, str], Histogram]]


@dataclass(frozen=True)
class _Profile:
    """What one vLLM version puts on its page."""

    v1: bool
    engine_label: bool
    gpu_cache: bool
    kv_cache: bool
    gpu_prefix_help: str | None
    prefix_cache: bool
    preemptions: bool
    tpot: bool
    itl: bool
    extras_012: bool


_DEPRECATED = " DEPRECATED: Use vllm:{} instead."
_PROFILES = {
    "0.6": _Profile(v1=False, engine_label=False, gpu_cache=True, kv_cache=False,
                    gpu_prefix_help=None, prefix_cache=False, preemptions=True, tpot=True,
                    itl=False, extras_012=False),
    "0.7": _Profile(v1=True, engine_label=False, gpu_cache=True, kv_cache=False,
                    gpu_prefix_help="blocks", prefix_cache=False, preemptions=False, tpot=True,
                    itl=False, extras_012=False),
    "0.8.3": _Profile(v1=True, engine_label=True, gpu_cache=True, kv_cache=False,
                      gpu_prefix_help="tokens", prefix_cache=False, preemptions=True, tpot=True,
                      itl=False, extras_012=False),
    "0.9.2": _Profile(v1=True, engine_label=True, gpu_cache=True, kv_cache=True,
                      gpu_prefix_help="tokens-deprecated", prefix_cache=True, preemptions=True,
                      tpot=True, itl=False, extras_012=False),
    "0.12": _Profile(v1=True, engine_label=True, gpu_cache=False, kv_cache=True,
                     gpu_prefix_help=None, prefix_cache=True, preemptions=True, tpot=False,
                     itl=True, extras_012=True),
}


class _Writer:
    """Accumulates page lines family by family in prometheus_client's layout."""

    def __init__(self, created: bool, sum_first: bool) -> None:
        self.lines: list[str] = []
        self.created = created
        self.sum_first = sum_first

    def _head(self, name: str, help_text: str | None, typ: str) -> None:
        if help_text is not None:
            self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {typ}")

    def gauge(self, name: str, help_text: str | None, series: Series) -> None:
        self._head(name, help_text, "gauge")
        self.lines.extend(f"{name}{_labels(lab)} {format_value(v)}" for lab, v in series)

    def counter(self, base: str, help_text: str, series: Series, created: float) -> None:
        self._head(base + "_total", help_text, "counter")
        self.lines.extend(f"{base}_total{_labels(lab)} {format_value(v)}" for lab, v in series)
        self._created(base, help_text, [lab for lab, _ in series], created)

    def _created(self, base: str, help_text: str, labelsets: Iterable[dict[str, str]],
                 created: float) -> None:
        if self.created:
            self.gauge(base + "_created", help_text, [(lab, created) for lab in labelsets])

    def histogram(self, name: str, help_text: str, series: HistSeries, created: float) -> None:
        self._head(name, help_text, "histogram")
        for lab, hist in series:
            sum_line = f"{name}_sum{_labels(lab)} {format_value(hist.sum)}"
            if self.sum_first:
                self.lines.append(sum_line)
            bounds = [*hist.bounds, math.inf]
            for bound, cum in zip(bounds, hist.cumulative(), strict=True):
                le = {**lab, "le": format_value(bound)}
                self.lines.append(f"{name}_bucket{_labels(le)} {format_value(cum)}")
            self.lines.append(f"{name}_count{_labels(lab)} {format_value(hist.count)}")
            if not self.sum_first:
                self.lines.append(sum_line)
        self._created(name, help_text, [lab for lab, _ in series], created)


def _runtime_header(out: _Writer) -> None:
    """The python_gc_*, python_info and process_* families of the default registry."""
    out.created, keep = False, out.created
    gc = {"0": (1.2e4, 0.0, 1.9e3), "1": (3.1e3, 0.0, 1.7e2), "2": (9.0e2, 0.0, 1.4e1)}
    for idx, (name, help_text) in enumerate((
        ("python_gc_objects_collected", "Objects collected during gc"),
        ("python_gc_objects_uncollectable", "Uncollectable objects found during GC"),
        ("python_gc_collections", "Number of times this generation was collected"),
    )):
        out.counter(name, help_text, [({"generation": g}, v[idx]) for g, v in gc.items()], 0.0)
    out.gauge("python_info", "Python platform information", [(
        {"implementation": "CPython", "major": "3", "minor": "12", "patchlevel": "9",
         "version": "3.12.9"}, 1.0)])
    for name, help_text, value in (
        ("process_virtual_memory_bytes", "Virtual memory size in bytes.", 3.1e10),
        ("process_resident_memory_bytes", "Resident memory size in bytes.", 2.2e9),
        ("process_start_time_seconds",
         "Start time of the process since unix epoch in seconds.", 1.74262400557e9),
    ):
        out.gauge(name, help_text, [({}, value)])
    out.counter("process_cpu_seconds", "Total user and system CPU time spent in seconds.",
                [({}, 439.72)], 0.0)
    out.gauge("process_open_fds", "Number of open file descriptors.", [({}, 45.0)])
    out.gauge("process_max_fds", "Maximum number of open file descriptors.", [({}, 1048576.0)])
    out.created = keep


class _Page:
    """Renders one version's families for a list of engines."""

    def __init__(self, engines: Sequence[EngineState], version: str, model_name: str) -> None:
        self.p = _PROFILES[version]
        self.version = version
        if not self.p.engine_label and len(engines) > 1:
            engines = [_merge_engines(engines)]
        self.engines = list(engines)
        self.model_name = model_name
        self.out = _Writer(created=self.p.v1, sum_first=not self.p.v1)
        self.created = min(e.created for e in self.engines)

    def labels(self, idx: int) -> dict[str, str]:
        if self.p.engine_label:
            return {"engine": str(idx), "model_name": self.model_name}
        return {"model_name": self.model_name}

    def per_engine(self, get: Callable[[EngineState], float]) -> Series:
        return [(self.labels(i), float(get(e))) for i, e in enumerate(self.engines)]

    def gauge(self, name: str, help_text: str, get: Callable[[EngineState], float]) -> None:
        self.out.gauge(name, help_text, self.per_engine(get))

    def counter(self, name: str, help_text: str, get: Callable[[EngineState], float]) -> None:
        self.out.counter(name, help_text, self.per_engine(get), self.created)

    def histogram(self, name: str, help_text: str, attr: str) -> None:
        series = [(self.labels(i), getattr(e, attr)) for i, e in enumerate(self.engines)]
        self.out.histogram(name, help_text, series, self.created)

    def cache_config(self, help_text: str | None) -> None:
        series: Series = []
        for idx, engine in enumerate(self.engines):
            labels = {
                "block_size": "16", "cache_dtype": "auto", "calculate_kv_scales": "False",
                "cpu_offload_gb": "0", "enable_prefix_caching": str(self.p.v1),
                "gpu_memory_utilization": "0.9", "is_attention_free": "False",
                "num_cpu_blocks": "0" if self.p.v1 else "9362",
                "num_gpu_blocks": str(engine.num_gpu_blocks),
                "num_gpu_blocks_override": "None", "sliding_window": "None",
                "swap_space_bytes": "4294967296",
            }
            if self.p.engine_label:
                labels["engine"] = str(idx)
            series.append((labels, 1.0))
        self.out.gauge("vllm:cache_config_info", help_text, series)

    def render(self) -> str:
        if self.p.v1:
            _runtime_header(self.out)
            self.scheduler_v1()
            self.counters_v1()
            self.histograms()
            self.cache_config("Information of the LLMEngine CacheConfig")
        else:
            self.cache_config(None)
            self.gauges_v0()
            self.counters_v0()
            self.histograms()
        return "\n".join(self.out.lines) + "\n"

    def gauges_v0(self) -> None:
        self.gauge("vllm:num_requests_running", "Number of requests currently running on GPU.",
                   lambda e: e.running)
        self.gauge("vllm:num_requests_swapped", "Number of requests swapped to CPU.",
                   lambda e: e.swapped)
        self.gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.",
                   lambda e: e.waiting)
        self.gauge("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.",
                   lambda e: e.kv_cache_usage)
        self.gauge("vllm:cpu_cache_usage_perc", "CPU KV-cache usage. 1 means 100 percent usage.",
                   lambda e: e.cpu_cache_usage)
        self.gauge("vllm:cpu_prefix_cache_hit_rate", "CPU prefix cache block hit rate.",
                   lambda e: -1.0)
        self.gauge("vllm:gpu_prefix_cache_hit_rate", "GPU prefix cache block hit rate.",
                   _hit_rate)
        self.out.gauge("vllm:lora_requests_info", "Running stats on lora requests.", [(
            {"max_lora": "0", "running_lora_adapters": "", "waiting_lora_adapters": ""},
            self.created)])

    def counters_v0(self) -> None:
        self.counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.",
                     lambda e: e.preemptions)
        self.counter("vllm:prompt_tokens", "Number of prefill tokens processed.",
                     lambda e: e.prompt_tokens)
        self.counter("vllm:generation_tokens", "Number of generation tokens processed.",
                     lambda e: e.generation_tokens)
        self.request_success(only_seen=True)

    def request_success(self, *, only_seen: bool) -> None:
        series: Series = []
        reasons = list(FINISH_REASONS)
        reasons += sorted({r for e in self.engines for r in e.request_success} - set(reasons))
        for reason in reasons:
            for idx, engine in enumerate(self.engines):
                count = engine.request_success.get(reason, 0.0)
                if only_seen and count == 0:
                    continue
                series.append(({**self.labels(idx), "finished_reason": reason}, count))
        self.out.counter("vllm:request_success", "Count of successfully processed requests.",
                         series, self.created)

    def scheduler_v1(self) -> None:
        p = self.p
        self.gauge("vllm:num_requests_running", "Number of requests in model execution batches.",
                   lambda e: e.running)
        self.gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.",
                   lambda e: e.waiting)
        if p.extras_012:
            self.sleep_state()
        if p.gpu_cache:
            deprecated = p.gpu_prefix_help == "tokens-deprecated"
            help_text = "GPU KV-cache usage. 1 means 100 percent usage."
            if deprecated:
                help_text += "DEPRECATED: Use vllm:kv_cache_usage_perc instead."
            self.gauge("vllm:gpu_cache_usage_perc", help_text, lambda e: e.kv_cache_usage)
        if p.gpu_prefix_help is not None:
            self.gpu_prefix_cache()
        if p.kv_cache:
            self.gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
                       lambda e: e.kv_cache_usage)
        if p.prefix_cache:
            self.counter("vllm:prefix_cache_queries",
                         "Prefix cache queries, in terms of number of queried tokens.",
                         lambda e: e.prefix_cache_queries)
            self.counter("vllm:prefix_cache_hits",
                         "Prefix cache hits, in terms of number of cached tokens.",
                         lambda e: e.prefix_cache_hits)
        if p.extras_012:
            self.extra_caches()

    def sleep_state(self) -> None:
        series: Series = []
        for state in ("awake", "weights_offloaded", "discard_all"):
            for idx in range(len(self.engines)):
                value = 1.0 if state == "awake" else 0.0
                series.append(({**self.labels(idx), "sleep_state": state}, value))
        self.out.gauge("vllm:engine_sleep_state", (
            "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is "
            "awake; weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep "
            "level 2."), series)

    def gpu_prefix_cache(self) -> None:
        unit = "blocks" if self.p.gpu_prefix_help == "blocks" else "tokens"
        queried, cached = f"queried {unit}.", f"cached {unit}."
        q_help = f"GPU prefix cache queries, in terms of number of {queried}"
        h_help = f"GPU prefix cache hits, in terms of number of {cached}"
        if self.p.gpu_prefix_help == "tokens-deprecated":
            q_help += _DEPRECATED.format("prefix_cache_queries")
            h_help += _DEPRECATED.format("prefix_cache_hits")
        self.counter("vllm:gpu_prefix_cache_queries", q_help, lambda e: e.prefix_cache_queries)
        self.counter("vllm:gpu_prefix_cache_hits", h_help, lambda e: e.prefix_cache_hits)

    def extra_caches(self) -> None:
        for name, help_text in (
            ("vllm:external_prefix_cache_queries",
             "External prefix cache queries from KV connector cross-instance cache sharing, "
             "in terms of number of queried tokens."),
            ("vllm:external_prefix_cache_hits",
             "External prefix cache hits from KV connector cross-instance cache sharing, "
             "in terms of number of cached tokens."),
            ("vllm:mm_cache_queries",
             "Multi-modal cache queries, in terms of number of queried items."),
            ("vllm:mm_cache_hits", "Multi-modal cache hits, in terms of number of cached items."),
        ):
            self.counter(name, help_text, lambda e: 0.0)

    def counters_v1(self) -> None:
        if self.p.preemptions:
            self.counter("vllm:num_preemptions",
                         "Cumulative number of preemption from the engine.",
                         lambda e: e.preemptions)
        self.counter("vllm:prompt_tokens", "Number of prefill tokens processed.",
                     lambda e: e.prompt_tokens)
        self.counter("vllm:generation_tokens", "Number of generation tokens processed.",
                     lambda e: e.generation_tokens)
        self.request_success(only_seen=False)

    def histograms(self) -> None:
        if not self.p.v1:
            self.histogram("vllm:iteration_tokens_total",
                           "Histogram of number of tokens per engine_step.", "iteration_tokens")
            self.timing_histograms()
            self.count_histograms()
            return
        self.count_histograms()
        self.timing_histograms()

    def count_histograms(self) -> None:
        self.histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.",
                       "request_prompt_tokens")
        self.histogram("vllm:request_generation_tokens", "Number of generation tokens processed.",
                       "request_generation_tokens")
        if self.p.v1:
            self.histogram("vllm:iteration_tokens_total",
                           "Histogram of number of tokens per engine_step.", "iteration_tokens")
        self.histogram("vllm:request_max_num_generation_tokens",
                       "Histogram of maximum number of requested generation tokens.",
                       "request_max_generation_tokens")
        self.histogram("vllm:request_params_n", "Histogram of the n request parameter.",
                       "params_n")
        self.histogram("vllm:request_params_max_tokens",
                       "Histogram of the max_tokens request parameter.", "params_max_tokens")

    def timing_histograms(self) -> None:
        self.histogram("vllm:time_to_first_token_seconds",
                       "Histogram of time to first token in seconds.", "ttft")
        if self.p.tpot:
            self.histogram("vllm:time_per_output_token_seconds",
                           "Histogram of time per output token in seconds.", "itl")
        if self.p.itl:
            self.histogram("vllm:inter_token_latency_seconds",
                           "Histogram of inter-token latency in seconds.", "itl")
            self.histogram("vllm:request_time_per_output_token_seconds",
                           "Histogram of time_per_output_token_seconds per request.",
                           "request_tpot")
        e2e_help = ("Histogram of e2e request latency in seconds." if self.p.v1
                    else "Histogram of end to end request latency in seconds.")
        self.histogram("vllm:e2e_request_latency_seconds", e2e_help, "e2e")
        for name, phase, attr in (
            ("vllm:request_queue_time_seconds", "WAITING", "queue_time"),
            ("vllm:request_inference_time_seconds", "RUNNING", "inference_time"),
            ("vllm:request_prefill_time_seconds", "PREFILL", "prefill_time"),
            ("vllm:request_decode_time_seconds", "DECODE", "decode_time"),
        ):
            self.histogram(name, f"Histogram of time spent in {phase} phase for request.", attr)
        if not self.p.v1:
            self.histogram("vllm:time_in_queue_requests",
                           "Histogram of time the request spent in the queue in seconds.",
                           "queue_time")
            self.histogram("vllm:model_forward_time_milliseconds",
                           "Histogram of time spent in the model forward pass in ms.",
                           "model_forward_ms")
            self.histogram("vllm:model_execute_time_milliseconds",
                           "Histogram of time spent in the model execute function in ms.",
                           "model_execute_ms")


def _hit_rate(engine: EngineState) -> float:
    if engine.prefix_cache_queries <= 0:
        return -1.0
    return engine.prefix_cache_hits / engine.prefix_cache_queries


def render_page(engines: Sequence[EngineState], *, version: str = "0.12",
                model_name: str = DEFAULT_MODEL) -> str:
    """The ``/metrics`` text of one vLLM pod of ``version`` serving ``engines``."""
    _check_version(version)
    if not engines:
        raise ValueError("render_page needs at least one engine")
    return _Page(engines, version, model_name).render()
