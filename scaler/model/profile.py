"""Performance profile of one vLLM replica, as data for the fleet models.

A replica is described by a handful of public, measurable numbers (see
``scaler/profiles/*.yaml`` for their sources):

* prefill runs at ``prefill_tokens_per_s`` (compute-bound, linear in tokens);
* one decode step (one token for every running sequence) takes
  ``decode_step_base_s + (decode_step_per_seq_s + decode_step_cpu_per_seq_s) * seqs
  + decode_step_per_cached_token_s * cached`` where ``cached`` is the number of KV-cache
  tokens the step reads (the Vidur-style linear model: fixed launch/sampling cost,
  per-sequence GPU work, attention memory traffic) plus the CPU work per running sequence
  and step (see below);
* the KV cache holds ``kv_cache_tokens`` tokens; at most ``max_num_seqs`` sequences run at
  once and one scheduler step processes at most ``max_num_batched_tokens`` tokens (vLLM V1
  chunked prefill: decode tokens first, prefill chunks fill the rest of the budget);
* one replica accepts at most ``max_requests_per_s`` requests per second, whatever its GPU.

Saturated request rate (continuous batching, steady state). The fleet models admit a
request only when the KV cache has room for its whole ``prompt + output`` (a conservative
stand-in for vLLM's on-demand block allocation, which we do not model together with
preemption), so at saturation the batch holds

    B = min(max_num_seqs, kv_cache_tokens / (p + o))

sequences. A running sequence holds on average ``p + o / 2`` cached tokens over its decode
life, so a saturated decode step takes ``t = decode_step_s(B, B * (p + o / 2))`` and yields
``B`` tokens. Prefill chunks ride along the decode steps, so each request costs the engine
its own prefill time ``p / prefill_tokens_per_s`` plus its share ``o * t / B`` of the ``o``
decode steps it takes part in. One replica therefore sustains

    mu = min(max_requests_per_s, 1 / (p / prefill_tokens_per_s + o * t / B))   requests/s.

Why a CPU term per sequence and step. The GPU coefficients (Vidur operator profiles, vLLM
CI's batch-8 latency runs) leave out work that grows with the batch and is not overlapped
with the GPU at large batches: the engine's scheduler bookkeeping, sampling and output
processing for every running request, and detokenising and streaming each generated token.
Without it the 8B/H100 profile read ~30 req/s at 600 + 200 tokens, where vLLM's CI measures
~19.5 req/s on ShareGPT, and 65 req/s at ShareGPT's own mean lengths (~230 + 200), where a
1,000-prompt ``vllm bench serve`` run measures 32.4. One coefficient fitted to the first
figure reproduces the second (32.5 req/s, 6.6k output tok/s), and the saturated TPOT it
implies (73 ms at 600 + 200) matches that run's mean TPOT (78 ms); a flat efficiency factor
fitted to the first would read 44 req/s on the second.

Why a request-rate ceiling. One ``vllm serve`` runs one API server process (unless
``--api-server-count`` says otherwise), which parses HTTP, applies the chat template,
tokenises, and streams every response on one CPU core. vLLM measured one API server
completing ~76 req/s of ShareGPT requests offered at 120 req/s to two engines that could
serve more (PR #17546, which added ``--api-server-count``; RFC #12705), and an llm-d
autoscaling run saw ~76 req/s per Llama-3.1-8B/H100 replica offered 200 req/s of
ShareGPT. Short requests would otherwise read 140+ req/s per replica from the GPU terms
alone. The ceiling does not move with GPU speed; raise it for replicas started with
several API servers. (``scaled``, the online correction, scales every term, the ceiling
included: a measured rate says how fast the whole replica is, not which part is slow.)

Correct profiles online from observed throughput (DESIGN.md section 9).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from scaler.schema import above, at_least, declared, setting

__all__ = ["ReplicaProfile"]


def _name(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(raw)
    return raw


def _number(raw: Any) -> float:
    """A finite number; numeric strings count (PyYAML reads ``1e-8`` as a string)."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError(raw)
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(raw)
    return value


def _whole(raw: Any) -> int:
    """A whole number, written as an integer, a whole float or a numeric string."""
    value = _number(raw)
    if value != math.floor(value):
        raise ValueError(raw)
    return int(value)


_POSITIVE = "a finite number > 0"
_NON_NEGATIVE = "a finite number >= 0"
_COUNT = "a positive integer"


@dataclass(frozen=True)
class ReplicaProfile:
    """One replica's serving performance (see the module docstring for the model)."""

    name: str = setting(doc="The profile's name.", parse=_name, accepted="a non-empty string")
    gpus: int = setting(doc="GPUs one replica uses.", parse=_whole, check=at_least(1),
                        accepted=_COUNT)
    prefill_tokens_per_s: float = setting(
        doc="Prompt tokens prefilled per second.", parse=_number, check=above(0),
        accepted=_POSITIVE)
    decode_step_base_s: float = setting(
        doc="Fixed cost of one decode step, seconds.", parse=_number, check=above(0),
        accepted=_POSITIVE)
    decode_step_per_seq_s: float = setting(
        doc="Decode step cost per running sequence, seconds.", parse=_number,
        check=at_least(0), accepted=_NON_NEGATIVE)
    decode_step_per_cached_token_s: float = setting(
        doc="Decode step cost per cached token read, seconds.", parse=_number,
        check=at_least(0), accepted=_NON_NEGATIVE)
    kv_cache_tokens: int = setting(doc="Tokens the KV cache holds.", parse=_whole,
                                   check=at_least(1), accepted=_COUNT)
    max_num_seqs: int = setting(doc="vLLM's max_num_seqs.", parse=_whole, check=at_least(1),
                                accepted=_COUNT)
    max_num_batched_tokens: int = setting(
        doc="vLLM's max_num_batched_tokens.", parse=_whole, check=at_least(1), accepted=_COUNT)
    decode_step_cpu_per_seq_s: float = setting(
        0.0, doc="CPU cost per running sequence and decode step (scheduling, output "
        "processing, detokenising and streaming its token), seconds; 0 when the GPU "
        "coefficients were measured end to end.", parse=_number, check=at_least(0),
        accepted=_NON_NEGATIVE)
    max_requests_per_s: float = setting(
        75.0, doc="Requests per second one replica accepts at most, whatever its GPU: what "
        "one vLLM API server process sustains (vLLM PR #17546); raise it with "
        "--api-server-count.", parse=_number, check=above(0), accepted=_POSITIVE)

    def __post_init__(self) -> None:
        problems = [f"{f.name} {reason}, got {getattr(self, f.name)!r}"
                    for f in declared(ReplicaProfile) if f.setting.check is not None
                    and (reason := f.setting.check(getattr(self, f.name)))]
        if problems:
            raise ValueError(f"profile {self.name!r}: " + "; ".join(problems))

    @property
    def step_per_seq_s(self) -> float:
        """Decode step cost per running sequence, GPU and CPU together."""
        return self.decode_step_per_seq_s + self.decode_step_cpu_per_seq_s

    def decode_step_s(self, running_seqs: float, cached_tokens: float) -> float:
        """Seconds for one decode step over ``running_seqs`` sequences reading ``cached_tokens``."""
        return (
            self.decode_step_base_s
            + self.step_per_seq_s * running_seqs
            + self.decode_step_per_cached_token_s * cached_tokens
        )

    def prefill_s(self, tokens: float) -> float:
        """Seconds of pure prefill compute for ``tokens`` prompt tokens."""
        return tokens / self.prefill_tokens_per_s

    def max_batch(self, mean_prompt: float, mean_output: float) -> float:
        """Largest concurrent batch: ``min(max_num_seqs, kv_cache_tokens / (p + o))``."""
        _check_lengths(mean_prompt, mean_output)
        return min(float(self.max_num_seqs), self.kv_cache_tokens / (mean_prompt + mean_output))

    def saturated_request_rate(self, mean_prompt: float, mean_output: float) -> float:
        """Requests/s one replica sustains at saturation (derivation in the module docstring):
        the engine's rate, capped at ``max_requests_per_s``.

        0.0 when a request of these lengths does not fit the KV cache at all.
        """
        return min(self.max_requests_per_s, self.engine_request_rate(mean_prompt, mean_output))

    def engine_request_rate(self, mean_prompt: float, mean_output: float) -> float:
        """Requests/s the engine (GPU and its per-step CPU work) sustains, before the ceiling."""
        batch = self.max_batch(mean_prompt, mean_output)
        if batch < 1.0:
            return 0.0
        step = self.decode_step_s(batch, batch * (mean_prompt + mean_output / 2.0))
        per_request_s = self.prefill_s(mean_prompt) + mean_output * step / batch
        return 1.0 / per_request_s

    def saturated_output_tokens_per_s(self, mean_prompt: float, mean_output: float) -> float:
        """Generated tokens/s at saturation: ``saturated_request_rate * mean_output``."""
        return self.saturated_request_rate(mean_prompt, mean_output) * mean_output

    def scaled(self, factor: float) -> ReplicaProfile:
        """The same serving stack ``factor`` times as fast: every time shrinks, every rate grows.

        The request-rate ceiling scales too, so ``saturated_request_rate`` is exactly ``factor``
        times this profile's at any lengths (a measured rate over the predicted one is then
        the factor that reproduces it).
        """
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"scale factor must be a finite number > 0, got {factor!r}")
        return dataclasses.replace(
            self,
            prefill_tokens_per_s=self.prefill_tokens_per_s * factor,
            decode_step_base_s=self.decode_step_base_s / factor,
            decode_step_per_seq_s=self.decode_step_per_seq_s / factor,
            decode_step_cpu_per_seq_s=self.decode_step_cpu_per_seq_s / factor,
            decode_step_per_cached_token_s=self.decode_step_per_cached_token_s / factor,
            max_requests_per_s=self.max_requests_per_s * factor,
        )


def _check_lengths(mean_prompt: float, mean_output: float) -> None:
    if not (math.isfinite(mean_prompt) and math.isfinite(mean_output)):
        raise ValueError(f"mean lengths must be finite, got {mean_prompt!r}, {mean_output!r}")
    if mean_prompt < 0 or mean_output < 0 or mean_prompt + mean_output <= 0:
        raise ValueError(
            f"mean lengths must be >= 0 and not both 0, got {mean_prompt!r}, {mean_output!r}"
        )
