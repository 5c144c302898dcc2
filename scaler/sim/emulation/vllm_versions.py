"""What each vLLM version the emulated pod supports puts on its ``/metrics`` page.

The emulated page (:mod:`scaler.sim.emulation.vllm_metrics`) must look exactly like the one
each supported vLLM release serves, so the adapters are tested against every layout the scaler
meets in production; this catalogue holds the per-version differences: which families exist,
whether the ``engine`` label does, and the histogram bucket bounds.

Facts relied on (read from vllm-project/vllm ``vllm/engine/metrics.py`` (V0) and
``vllm/v1/metrics/loggers.py`` (V1) at several points in history, and from real pages quoted in
vLLM, production-stack and aibrix issues/docs):

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

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PROFILES", "VLLM_VERSIONS", "VersionProfile", "bucket_bounds", "check_version"]

VLLM_VERSIONS = ("0.6", "0.7", "0.8.3", "0.9.2", "0.12")

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
    check_version(version)
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


def check_version(version: str) -> None:
    if version not in VLLM_VERSIONS:
        raise ValueError(f"unknown vLLM version {version!r}; expected one of {VLLM_VERSIONS}")



@dataclass(frozen=True)
class VersionProfile:
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


PROFILES = {
    "0.6": VersionProfile(
        v1=False, engine_label=False, gpu_cache=True, kv_cache=False, gpu_prefix_help=None,
        prefix_cache=False, preemptions=True, tpot=True, itl=False, extras_012=False),
    "0.7": VersionProfile(
        v1=True, engine_label=False, gpu_cache=True, kv_cache=False, gpu_prefix_help="blocks",
        prefix_cache=False, preemptions=False, tpot=True, itl=False, extras_012=False),
    "0.8.3": VersionProfile(
        v1=True, engine_label=True, gpu_cache=True, kv_cache=False, gpu_prefix_help="tokens",
        prefix_cache=False, preemptions=True, tpot=True, itl=False, extras_012=False),
    "0.9.2": VersionProfile(
        v1=True, engine_label=True, gpu_cache=True, kv_cache=True,
        gpu_prefix_help="tokens-deprecated", prefix_cache=True, preemptions=True, tpot=True,
        itl=False, extras_012=False),
    "0.12": VersionProfile(
        v1=True, engine_label=True, gpu_cache=False, kv_cache=True, gpu_prefix_help=None,
        prefix_cache=True, preemptions=True, tpot=False, itl=True, extras_012=True),
}


