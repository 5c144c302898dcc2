"""Every request a simulated fleet has seen, and the time it reached each stage.

Columns are numpy arrays indexed by request id, so the fleet updates admissions, first tokens
and finishes for a whole tick in one vectorised assignment; the table only grows (amortised
doubling), so feeding a trace in chunks stays linear. Stages not reached are NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

__all__ = ["RequestResults", "RequestTable"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
_T = TypeVar("_T", bound=np.generic)


@dataclass(frozen=True)
class RequestResults:
    """Per-request outcomes in arrival order; NaN where a stage was not reached."""

    arrival_s: FloatArray
    prompt_tokens: IntArray
    output_tokens: IntArray
    queue_s: FloatArray
    ttft_s: FloatArray
    finish_s: FloatArray

    def __len__(self) -> int:
        return int(self.arrival_s.size)


class RequestTable:
    """Append-only request table with amortised growth."""

    def __init__(self) -> None:
        self.n = 0
        self.arrival = np.empty(0)
        self.prompt = np.empty(0, dtype=np.int64)
        self.output = np.empty(0, dtype=np.int64)
        self.admit = np.empty(0)
        self.first = np.empty(0)
        self.finish = np.empty(0)

    def append(self, arrival: FloatArray, prompt: IntArray, output: IntArray) -> None:
        need = self.n + arrival.size
        if need > self.arrival.size:
            size = max(need, 2 * self.arrival.size, 1024)
            self.arrival = _grown(self.arrival, size, math.nan)
            self.prompt = _grown(self.prompt, size, 0)
            self.output = _grown(self.output, size, 0)
            self.admit = _grown(self.admit, size, math.nan)
            self.first = _grown(self.first, size, math.nan)
            self.finish = _grown(self.finish, size, math.nan)
        end = self.n + arrival.size
        self.arrival[self.n:end] = arrival
        self.prompt[self.n:end] = prompt
        self.output[self.n:end] = output
        self.n = end


def _grown(array: npt.NDArray[_T], size: int, fill: float) -> npt.NDArray[_T]:
    out = np.full(size, fill, dtype=array.dtype)
    out[:array.size] = array
    return out

