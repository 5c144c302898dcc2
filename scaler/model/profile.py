"""Performance profile of one vLLM replica, as data for the fleet models.

A replica is described by a handful of public, measurable numbers (see
``scaler/profiles/*.yaml`` for their sources):

* prefill runs at ``prefill_tokens_per_s`` (compute-bound, linear in tokens);
* one decode step (one token for every running sequence) takes
  ``decode_step_base_s + decode_step_per_seq_s * seqs + decode_step_per_cached_token_s * cached``
  where ``cached`` is the number of KV-cache tokens the step reads (the Vidur-style linear
  model: fixed launch/sampling cost, per-sequence work, attention memory traffic);
* the KV cache holds ``kv_cache_tokens`` tokens; at most ``max_num_seqs`` sequences run at
  once and one scheduler step processes at most ``max_num_batched_tokens`` tokens (vLLM V1
  chunked prefill: decode tokens first, prefill chunks fill the rest of the budget).

Saturated request rate (continuous batching, steady state). The fleet models admit a
request only when the KV cache has room for its whole ``prompt + output`` (a conservative
stand-in for vLLM's on-demand block allocation, which we do not model together with
preemption), so at saturation the batch holds

    B = min(max_num_seqs, kv_cache_tokens / (p + o))

sequences. A running sequence holds on average ``p + o / 2`` cached tokens over its decode
life, so a saturated decode step takes ``t = decode_step_s(B, B * (p + o / 2))`` and yields
``B`` tokens. Prefill chunks ride along the decode steps, so each request costs the replica
its own prefill time ``p / prefill_tokens_per_s`` plus its share ``o * t / B`` of the ``o``
decode steps it takes part in. One replica therefore sustains

    mu = 1 / (p / prefill_tokens_per_s + o * t / B)   requests/s.

This ignores scheduler/CPU overhead, detokenisation and the ramp-down tail of a finite
benchmark, so it reads high against end-to-end benchmark figures: for the 8B/H100 profile
and ShareGPT-like lengths (600 prompt / 200 output) it gives ~30 req/s and ~6.1k output
tok/s, where vLLM CI reports ~19.5 req/s on the real ShareGPT mix; the output token rate
sits inside DESIGN.md's 4-6.5k tok/s range. Correct profiles online from observed
throughput (DESIGN.md section 9).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "DEFAULT_PROFILE_PATH",
    "PROFILES_DIR",
    "ReplicaProfile",
    "default_profile",
    "load_profile",
]

PROFILES_DIR = Path(__file__).resolve().parents[1] / "profiles"
DEFAULT_PROFILE_PATH = PROFILES_DIR / "llama-8b-h100.yaml"

_INT_FIELDS = frozenset({"gpus", "kv_cache_tokens", "max_num_seqs", "max_num_batched_tokens"})
_NONNEG_FIELDS = frozenset({"decode_step_per_seq_s", "decode_step_per_cached_token_s"})


@dataclass(frozen=True)
class ReplicaProfile:
    """One replica's serving performance (see the module docstring for the model)."""

    name: str
    gpus: int
    prefill_tokens_per_s: float
    decode_step_base_s: float
    decode_step_per_seq_s: float
    decode_step_per_cached_token_s: float
    kv_cache_tokens: int
    max_num_seqs: int
    max_num_batched_tokens: int

    def __post_init__(self) -> None:
        problems = _field_problems(self)
        if problems:
            raise ValueError(f"profile {self.name!r}: " + "; ".join(problems))

    def decode_step_s(self, running_seqs: float, cached_tokens: float) -> float:
        """Seconds for one decode step over ``running_seqs`` sequences reading ``cached_tokens``."""
        return (
            self.decode_step_base_s
            + self.decode_step_per_seq_s * running_seqs
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
        """Requests/s one replica sustains at saturation (derivation in the module docstring).

        0.0 when a request of these lengths does not fit the KV cache at all.
        """
        batch = self.max_batch(mean_prompt, mean_output)
        if batch < 1.0:
            return 0.0
        step = self.decode_step_s(batch, batch * (mean_prompt + mean_output / 2.0))
        per_request_s = self.prefill_s(mean_prompt) + mean_output * step / batch
        return 1.0 / per_request_s

    def saturated_output_tokens_per_s(self, mean_prompt: float, mean_output: float) -> float:
        """Generated tokens/s at saturation: ``saturated_request_rate * mean_output``."""
        return self.saturated_request_rate(mean_prompt, mean_output) * mean_output


def _check_lengths(mean_prompt: float, mean_output: float) -> None:
    if not (math.isfinite(mean_prompt) and math.isfinite(mean_output)):
        raise ValueError(f"mean lengths must be finite, got {mean_prompt!r}, {mean_output!r}")
    if mean_prompt < 0 or mean_output < 0 or mean_prompt + mean_output <= 0:
        raise ValueError(
            f"mean lengths must be >= 0 and not both 0, got {mean_prompt!r}, {mean_output!r}"
        )


def _field_problems(profile: ReplicaProfile) -> list[str]:
    problems = []
    for f in fields(profile):
        if f.name == "name":
            continue
        value = getattr(profile, f.name)
        if f.name in _NONNEG_FIELDS:
            if not (math.isfinite(value) and value >= 0):
                problems.append(f"{f.name} must be a finite number >= 0, got {value!r}")
        elif not (math.isfinite(value) and value > 0):
            problems.append(f"{f.name} must be a finite number > 0, got {value!r}")
    return problems


def _coerce(key: str, raw: Any) -> tuple[Any, str | None]:
    """The typed value for ``key`` and ``None``, or ``None`` and what is wrong with it."""
    if key == "name":
        if isinstance(raw, str) and raw.strip():
            return raw, None
        return None, f"key 'name': expected a non-empty string, got {raw!r}"
    if isinstance(raw, bool):
        return None, f"key {key!r}: expected a number, got {raw!r}"
    if isinstance(raw, str):
        try:
            raw = float(raw)
        except ValueError:
            return None, f"key {key!r}: expected a number, got {raw!r}"
    if not isinstance(raw, int | float):
        return None, f"key {key!r}: expected a number, got {raw!r}"
    if key in _INT_FIELDS:
        if float(raw) != math.floor(raw) or raw <= 0:
            return None, f"key {key!r}: expected a positive integer, got {raw!r}"
        return int(raw), None
    value = float(raw)
    low_ok = value >= 0 if key in _NONNEG_FIELDS else value > 0
    if not (math.isfinite(value) and low_ok):
        bound = ">= 0" if key in _NONNEG_FIELDS else "> 0"
        return None, f"key {key!r}: expected a finite number {bound}, got {raw!r}"
    return value, None


def load_profile(path: str | Path) -> ReplicaProfile:
    """Read a profile YAML; ValueError naming the file and every bad, missing or unknown key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of profile keys, got {type(data).__name__}")
    expected = [f.name for f in fields(ReplicaProfile)]
    problems = [f"missing key {key!r}" for key in expected if key not in data]
    problems += [f"unknown key {key!r}" for key in data if key not in expected]
    values: dict[str, Any] = {}
    for key in expected:
        if key in data:
            value, problem = _coerce(key, data[key])
            if problem is None:
                values[key] = value
            else:
                problems.append(problem)
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    return ReplicaProfile(**values)


@functools.cache
def default_profile() -> ReplicaProfile:
    """The packaged Llama-3.1-8B on 1x H100 profile."""
    return load_profile(DEFAULT_PROFILE_PATH)
