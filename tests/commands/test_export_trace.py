"""scaler export-trace: a workload's vLLM counters in a real Prometheus become a replay trace."""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from scaler.commands.cli import main
from scaler.sim.traces import RateTrace, read_trace
from tests.prometheus_server import backfill, free_port, running_prometheus

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("promtool") is None,
    reason="needs the Debian prometheus package (.ci/run installs it)")

SCRAPE = 60  # seconds between recorded samples
HOURS = 6


START = math.floor(time.time() / 3600) * 3600 - HOURS * 3600


def rate_at(t: float) -> float:
    """Requests/s of the recorded workload: 20 at first, 50 from the third hour on."""
    return 20.0 if t < START + 2 * 3600 else 50.0


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Prometheus holding six hours of two pods' vLLM counters (backfilled with promtool).

    Each pod serves half the requests, with 600-token prompts and 150-token outputs.
    """
    root = tmp_path_factory.mktemp("prometheus-export")
    counters = {"vllm:request_success_total": 1.0, "vllm:prompt_tokens_total": 600.0,
                "vllm:generation_tokens_total": 150.0}
    lines = []
    for name, per_request in counters.items():
        lines.append(f"# TYPE {name} unknown")
        for pod in ("llama-0", "llama-1"):
            total = 0.0
            for t in range(START, START + HOURS * 3600, SCRAPE):
                total += rate_at(t) / 2 * SCRAPE * per_request
                lines.append(f'{name}{{namespace="llm",pod="{pod}"}} {total:.1f} {t}')
    with running_prometheus(root, data=backfill(root, lines)) as url:
        yield url


def test_the_history_becomes_a_trace_the_replay_reads(prometheus: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine.csv"
    code = main(["export-trace", "--prometheus", prometheus,
                 "--selector", 'namespace="llm",pod=~"llama-.*"', "--days", "1",
                 "--step", "600", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    trace = read_trace(out)
    assert isinstance(trace, RateTrace) and trace.step_s == 600
    assert trace.start_s[0] == 0
    full = np.round(trace.rate[1:-1], 3)  # inner windows lie wholly in the history
    assert full[0] == 20.0 and full[-1] == 50.0
    between = full[(full != 20.0) & (full != 50.0)]
    assert len(between) <= 1 and all(20 < r < 50 for r in between)  # the window of the step
    assert len(trace.rate) <= HOURS * 6 + 1  # no zero rows outside the history
    assert np.allclose(trace.mean_prompt[1:-1], 600.0, rtol=1e-3)
    assert np.allclose(trace.mean_output[1:-1], 150.0, rtol=1e-3)
    assert "next: scaler bench --trace" in capsys.readouterr().out
    assert main(["replay", "--trace", str(out), "--policy", "reactive",
                 "--out", str(tmp_path / "replay")]) == 0


def test_a_selector_matching_nothing_says_so(prometheus: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["export-trace", "--prometheus", prometheus, "--selector", 'namespace="nope"',
                 "--days", "1", "--out", str(tmp_path / "none.csv")])
    assert code == 1
    assert "has no vllm:request_success_total" in capsys.readouterr().err
    assert not (tmp_path / "none.csv").exists()


def test_prometheus_down_is_a_clear_error(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["export-trace", "--prometheus", f"http://127.0.0.1:{free_port()}",
                 "--selector", 'namespace="llm"', "--out", str(tmp_path / "x.csv")])
    assert code == 1
    assert "is prometheus.url right?" in capsys.readouterr().err
