"""One emulated vLLM engine's state: the gauges, counters and histograms its page shows.

Tests, the demo and the benchmarks drive it directly (set the gauges, record steps and
finished requests); :func:`~scaler.sim.emulation.vllm_metrics.render_page` turns it into the
``/metrics`` text of any supported vLLM version. Histogram bounds follow the engine's
``bucket_version`` because vLLM changed them between releases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from scaler.sim.emulation.exposition import Histogram
from scaler.sim.emulation.vllm_versions import bucket_bounds

__all__ = ["FINISH_REASONS", "EngineState", "merge_engines"]

FINISH_REASONS = ("stop", "length", "abort")

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
                       max_tokens: int | None = None, n: int = 1) -> None:
        """``n`` finished requests alike: success counter and the per-request histograms.

        ``ttft_s`` and ``e2e_s`` count from arrival, so prefill = ttft - queue and
        decode = e2e - ttft; inter-token latency is spread evenly over the decode.
        """
        if n <= 0:
            return
        self.request_success[finished_reason] = self.request_success.get(finished_reason, 0) + n
        decode_s = max(e2e_s - ttft_s, 0.0)
        self.e2e.observe(e2e_s, n)
        self.queue_time.observe(queue_s, n)
        self.ttft.observe(ttft_s, n)
        self.prefill_time.observe(max(ttft_s - queue_s, 0.0), n)
        self.decode_time.observe(decode_s, n)
        self.inference_time.observe(max(e2e_s - queue_s, 0.0), n)
        if generation_tokens > 1:
            per_token = decode_s / (generation_tokens - 1)
            self.itl.observe(per_token, n * (generation_tokens - 1))
            self.request_tpot.observe(per_token, n)
        self.request_prompt_tokens.observe(prompt_tokens, n)
        self.request_generation_tokens.observe(generation_tokens, n)
        self.request_max_generation_tokens.observe(max_tokens or generation_tokens, n)
        self.params_n.observe(1, n)
        if max_tokens is not None:
            self.params_max_tokens.observe(max_tokens, n)
        per_step_ms = 1000.0 * decode_s / max(generation_tokens, 1)
        self.model_forward_ms.observe(per_step_ms, n)
        self.model_execute_ms.observe(per_step_ms, n)

def merge_engines(engines: Sequence[EngineState]) -> EngineState:
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
