"""dcgm-exporter ``/metrics`` page -> per-GPU readings, and GPU load per pod or per node.

Why: GPU load is the scaler's secondary signal (utilisation reads near 100% whenever a batch
runs, so queue and KV-cache lead), and on bare-metal nodes it is also how node capacity is
judged. dcgm-exporter pages differ by version and deployment:

- labels ``gpu``, ``UUID``, ``device``, ``modelName``, ``Hostname`` (renamed ``hostname`` in
  later releases), and ``container``/``namespace``/``pod`` which are present but EMPTY when no
  pod holds the GPU (kept as ""), or absent on bare-metal exporters without pod mapping;
- floats may be printed ``%f`` style (``302.206000``) and HELP/TYPE lines may be missing;
- a field with no data is printed as a DCGM "blank" sentinel near the integer maximum
  (int64 blanks are >= 0x7ffffffffffffff0 ~ 9.22e18, e.g. 9223372036854775794; int32 blanks
  are >= 0x7ffffff0 = 2147483632). None of the fields read here (a percentage, a 0-1 ratio,
  MiB of one GPU's memory) can legitimately reach 2147483632, so any value at or above it, and
  NaN, reads as None (unknown), never as a number.

Series are joined per (gpu, UUID, namespace, pod): one reading per GPU, or per GPU and pod
when a GPU is shared (time-slicing), where the exporter repeats the GPU for every pod.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from adapters.formats.promtext import PageError, Sample, parse

__all__ = [
    "DCGM_SAMPLE_NAMES",
    "GpuLoad",
    "GpuReading",
    "gpu_load_all",
    "gpu_load_by_pod",
    "read_dcgm",
]

_UTIL = "DCGM_FI_DEV_GPU_UTIL"
_FB_USED = "DCGM_FI_DEV_FB_USED"
_FB_FREE = "DCGM_FI_DEV_FB_FREE"
_ENGINE_ACTIVE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
_FIELDS = {_UTIL: "util_pct", _FB_USED: "fb_used_mib", _FB_FREE: "fb_free_mib",
           _ENGINE_ACTIVE: "engine_active"}
DCGM_SAMPLE_NAMES: frozenset[str] = frozenset(_FIELDS)
_BLANK_MIN = 2147483632.0  # DCGM_INT32_BLANK; every int64/float blank is larger still


@dataclass(frozen=True)
class GpuReading:
    """One GPU (or one GPU as seen by one pod) on one dcgm-exporter page."""

    gpu: str
    uuid: str
    hostname: str
    namespace: str
    pod: str
    util_pct: float | None
    fb_used_mib: float | None
    fb_free_mib: float | None
    engine_active: float | None


@dataclass(frozen=True)
class GpuLoad:
    """Load of a group of GPUs: means of util/engine-active over GPUs that report them."""

    gpus: int
    util_pct: float | None
    engine_active: float | None
    fb_used_mib: float
    fb_free_mib: float


@dataclass
class _Partial:
    labels: dict[str, str]
    values: dict[str, float | None] = field(default_factory=dict)


def _clean(value: float) -> float | None:
    if math.isnan(value) or value >= _BLANK_MIN:
        return None
    return value


def _key(sample: Sample) -> tuple[str, str, str, str]:
    labels = sample.labels
    return (labels.get("gpu", ""), labels.get("UUID", ""), labels.get("namespace", ""),
            labels.get("pod", ""))


def read_dcgm(text: str) -> list[GpuReading]:
    """GPU readings of one dcgm-exporter page, in page order.

    Raises PageError when none of the four fields read here is on the page.
    """
    page = parse(text, DCGM_SAMPLE_NAMES)
    if not any(page.get(name) for name in _FIELDS):
        raise PageError(f"no {', '.join(sorted(_FIELDS))} on the page: is this a "
                        "dcgm-exporter /metrics endpoint, and are those fields enabled in "
                        "its counters CSV?")
    partials: dict[tuple[str, str, str, str], _Partial] = {}
    for name, attr in _FIELDS.items():
        for sample in page.get(name):
            partial = partials.setdefault(_key(sample), _Partial(dict(sample.labels)))
            partial.values[attr] = _clean(sample.value)
    return [_reading(key, partial) for key, partial in partials.items()]


def _reading(key: tuple[str, str, str, str], partial: _Partial) -> GpuReading:
    gpu, uuid, namespace, pod = key
    labels = partial.labels
    return GpuReading(
        gpu=gpu, uuid=uuid, hostname=labels.get("Hostname", labels.get("hostname", "")),
        namespace=namespace, pod=pod,
        util_pct=partial.values.get("util_pct"),
        fb_used_mib=partial.values.get("fb_used_mib"),
        fb_free_mib=partial.values.get("fb_free_mib"),
        engine_active=partial.values.get("engine_active"),
    )


def _mean(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return math.fsum(known) / len(known) if known else None


def _load(readings: list[GpuReading]) -> GpuLoad:
    return GpuLoad(
        gpus=len(readings),
        util_pct=_mean(r.util_pct for r in readings),
        engine_active=_mean(r.engine_active for r in readings),
        fb_used_mib=math.fsum(r.fb_used_mib for r in readings if r.fb_used_mib is not None),
        fb_free_mib=math.fsum(r.fb_free_mib for r in readings if r.fb_free_mib is not None),
    )


def gpu_load_by_pod(readings: Iterable[GpuReading], namespace: str) -> dict[str, GpuLoad]:
    """GPU load of every pod of ``namespace`` that holds GPUs (readings without a pod skipped)."""
    by_pod: dict[str, list[GpuReading]] = {}
    for reading in readings:
        if reading.pod and reading.namespace == namespace:
            by_pod.setdefault(reading.pod, []).append(reading)
    return {pod: _load(group) for pod, group in by_pod.items()}


def gpu_load_all(readings: Iterable[GpuReading]) -> GpuLoad:
    """Load of every GPU on a page (bare metal, no pod labels); a shared GPU counts once."""
    unique: dict[tuple[str, str], GpuReading] = {}
    for reading in readings:
        unique.setdefault((reading.gpu, reading.uuid), reading)
    return _load(list(unique.values()))


def gpu_load_by_namespaced_pod(readings: Iterable[GpuReading]
                               ) -> dict[tuple[str, str], GpuLoad]:
    """GPU load of every (namespace, pod) on the pages given (readings without a pod skipped)."""
    by_pod: dict[tuple[str, str], list[GpuReading]] = {}
    for reading in readings:
        if reading.pod:
            by_pod.setdefault((reading.namespace, reading.pod), []).append(reading)
    return {key: _load(group) for key, group in by_pod.items()}
