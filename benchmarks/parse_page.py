"""Benchmark: adapters.formats.promtext vs prometheus_client.parser on an 8-engine vLLM page.

Why: the scaler parses one page per pod per scrape on its event loop; DESIGN.md puts
prometheus_client at ~7-10 ms for one 440-line page. This builds an 8-engine vLLM 0.12 page
with the emulator (busy engines, so histograms are populated), checks that both parsers give
identical values for the scaler's families, then times both in the same process (best and
median of many runs) and prints the speed-up. ``read_vllm`` (parse + snapshot) is timed too.

Our parser keeps a cache of label sets across pages (successive scrapes of a pod repeat them),
so it is timed both "cold" (cache emptied before every run: a first scrape) and "warm" (steady
state); the speed-up reported on the last line is the conservative cold one.

Run: ``python benchmarks/parse_page.py``
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from adapters.formats import promtext
from adapters.formats.vllm import VLLM_SAMPLE_NAMES, read_vllm
from scaler.sim.emulation.engine_state import EngineState
from scaler.sim.emulation.vllm_metrics import render_page

ENGINES = 8
GOAL = 10.0


def build_page() -> str:
    engines = []
    for idx in range(ENGINES):
        engine = EngineState(running=40 + idx, waiting=idx, kv_cache_usage=0.5 + 0.05 * idx,
                             prefix_cache_queries=1e6, prefix_cache_hits=4e5)
        for k in range(200):
            engine.record_step(512 + k, 64)
            engine.record_request(prompt_tokens=300 + 7 * k, generation_tokens=40 + k % 300,
                                  queue_s=0.002 * k, ttft_s=0.05 + 0.01 * k,
                                  e2e_s=1.0 + 0.05 * k, max_tokens=1024)
        engines.append(engine)
    return render_page(engines, version="0.12")


Key = tuple[str, tuple[tuple[str, str], ...]]


def _key_value(value: float) -> object:
    return "NaN" if math.isnan(value) else float(value)


def check_identical(page: str) -> int:
    """Both parsers agree on every sample of the scaler's families; returns their count."""
    theirs: dict[Key, object] = {}
    for family in text_string_to_metric_families(page):
        for s in family.samples:
            if s.name in VLLM_SAMPLE_NAMES:
                theirs[(s.name, tuple(sorted(s.labels.items())))] = _key_value(s.value)
    parsed = promtext.parse(page, VLLM_SAMPLE_NAMES)
    ours = {(s.name, tuple(sorted(s.labels.items()))): _key_value(s.value)
            for samples in parsed.samples.values() for s in samples}
    if ours != theirs or parsed.bad_lines:
        raise SystemExit("MISMATCH between promtext and prometheus_client on the scaler's families")
    return len(ours)


def timed(fn: Callable[[], object], runs: int, before: Callable[[], None] | None = None,
          ) -> tuple[float, float]:
    """(best, median) wall time in milliseconds over ``runs`` calls."""
    samples = []
    for _ in range(runs):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000.0)
    return min(samples), statistics.median(samples)


def main() -> None:
    page = build_page()
    n_samples = check_identical(page)
    print(f"page: vLLM 0.12, {ENGINES} engines, {len(page.splitlines())} lines, "
          f"{len(page) / 1024:.0f} KiB; scaler families: {n_samples} samples, identical values "
          "in both parsers")
    clear = promtext.clear_label_cache
    results = {
        "prometheus_client (all families)": timed(
            lambda: list(text_string_to_metric_families(page)), 30),
        "promtext, scaler families, cold": timed(
            lambda: promtext.parse(page, VLLM_SAMPLE_NAMES), 300, before=clear),
        "promtext, scaler families, warm": timed(
            lambda: promtext.parse(page, VLLM_SAMPLE_NAMES), 300),
        "promtext, all families, cold": timed(lambda: promtext.parse(page), 100, before=clear),
        "read_vllm end to end, cold": timed(lambda: read_vllm(page), 300, before=clear),
        "read_vllm end to end, warm": timed(lambda: read_vllm(page), 300),
    }
    for label, (best, median) in results.items():
        print(f"{label:36s} best {best:7.3f} ms   median {median:7.3f} ms")
    baseline = results["prometheus_client (all families)"][1]
    cold = results["promtext, scaler families, cold"][1]
    warm = results["promtext, scaler families, warm"][1]
    print(f"warm-cache speed-up (median): {baseline / warm:.1f}x")
    print(f"parse speed-up vs prometheus_client: {baseline / cold:.1f}x (goal >= {GOAL:.0f}x)")


if __name__ == "__main__":
    main()
