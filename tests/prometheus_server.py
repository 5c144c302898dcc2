"""A real Prometheus (the Debian package) for integration tests: backfilled, started, stopped."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def backfill(root: Path, openmetrics_lines: Sequence[str]) -> Path:
    """A TSDB under ``root`` holding the samples (OpenMetrics text, ``# EOF`` added)."""
    (root / "history.om").write_text("\n".join([*openmetrics_lines, "# EOF"]) + "\n")
    data = root / "data"
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics",
                    str(root / "history.om"), str(data)], check=True, capture_output=True)
    return data


@contextmanager
def running_prometheus(root: Path, config_yaml: str = "global: {scrape_interval: 1m}\n",
                       data: Path | None = None) -> Iterator[str]:
    """Prometheus on a free loopback port with ``config_yaml``; yields its base URL."""
    (root / "prometheus.yml").write_text(config_yaml)
    port = free_port()
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={root / 'prometheus.yml'}",
         f"--storage.tsdb.path={data or root / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--storage.tsdb.retention.time=30d"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def wait_ready(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"prometheus did not become ready in {timeout_s:g} s")
