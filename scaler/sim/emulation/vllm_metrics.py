"""Render real-format vLLM ``/metrics`` pages for the emulated vLLM pod.

Why: tests, the demo and the benchmarks have no GPU and no vLLM, yet the adapters must be
exercised on pages that look exactly like the ones vLLM serves in each version the scaler
supports: same family names, HELP/TYPE lines, label sets and order, bucket bounds and number
formatting. Everything here was written for this project from the facts listed in
:mod:`scaler.sim.emulation.vllm_versions` and :mod:`scaler.sim.emulation.exposition`.

The page is assembled here family by family, in vLLM's order and with its HELP texts, as the
version's profile says (:mod:`scaler.sim.emulation.vllm_versions`), from one or more engines
(:mod:`scaler.sim.emulation.engine_state`), and written in prometheus_client's layout
(:mod:`scaler.sim.emulation.exposition`). A version without the ``engine`` label gets the
engines merged into one series first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from scaler.sim.emulation.engine_state import FINISH_REASONS, EngineState, merge_engines
from scaler.sim.emulation.exposition import PageWriter, Series, runtime_header
from scaler.sim.emulation.vllm_versions import PROFILES, check_version

__all__ = ["DEFAULT_MODEL", "render_page"]

DEFAULT_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
_DEPRECATED = " DEPRECATED: Use vllm:{} instead."


class _Page:
    """Renders one version's families for a list of engines."""

    def __init__(self, engines: Sequence[EngineState], version: str, model_name: str) -> None:
        self.p = PROFILES[version]
        self.version = version
        if not self.p.engine_label and len(engines) > 1:
            engines = [merge_engines(engines)]
        self.engines = list(engines)
        self.model_name = model_name
        self.out = PageWriter(created=self.p.v1, sum_first=not self.p.v1)
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
            runtime_header(self.out)
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
    check_version(version)
    if not engines:
        raise ValueError("render_page needs at least one engine")
    return _Page(engines, version, model_name).render()
