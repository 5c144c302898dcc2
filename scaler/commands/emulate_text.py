"""What `scaler emulate` prints: a line per pod, how to point the scaler and Prometheus at
the pods, and the status line.

The snippets name each pod (``emulated-vllm-0=URL`` in ``endpoints``, ``pod`` and
``namespace`` labels in the scrape config), so the same trigger works when the scaler scrapes
the pods itself and with ``metricsSource: prometheus``, which finds a pod's series in
Prometheus by those two labels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from scaler.sim.emulation.live_fleet import FleetStatus

if TYPE_CHECKING:
    from scaler.commands.emulate import EmulationSetup

__all__ = ["POD_NAME", "pod_line", "snippets", "status_line"]

POD_NAME = "emulated-vllm-{}"
NAMESPACE = "default"


def pod_line(index: int, url: str, setup: EmulationSetup) -> str:
    return (f"pod {POD_NAME.format(index)}: {url}  (vLLM {setup.vllm_version} /metrics, "
            f"model {setup.model})")


def snippets(urls: list[str], host: str) -> str:
    """How to point ``scaler serve`` (a trigger's metadata) and Prometheus at the pods."""
    named = ",".join(f"{POD_NAME.format(i)}={url}" for i, url in enumerate(urls))
    targets = "\n".join(
        f"        - targets: [\"{urlsplit(url).netloc}\"]\n"
        f"          labels: {{pod: {POD_NAME.format(i)}, namespace: {NAMESPACE}}}"
        for i, url in enumerate(urls))
    lines = [
        "",
        "Point `scaler serve` at them: a ScaledObject trigger (namespace default) whose "
        "scalerAddress is where it listens:",
        "      - type: external",
        "        metadata:",
        "          scalerAddress: 127.0.0.1:9090",
        f"          endpoints: \"{named}\"",
        "Prometheus (prometheus.yml), then `metricsSource: prometheus` in the trigger and "
        "`prometheus.url` in the scaler's settings read the pods from it:",
        "  scrape_configs:",
        "    - job_name: vllm-emulated",
        "      scrape_interval: 15s",
        "      static_configs:",
        targets,
    ]
    if host.startswith("127.") or host in ("localhost", "::1"):
        lines.append("(Prometheus or KEDA in a container or a cluster: start with --host "
                     "0.0.0.0 and use this machine's address as they see it.)")
    lines.append("Stop with Ctrl-C.")
    return "\n".join(lines)


def status_line(status: FleetStatus) -> str:
    minutes, seconds = divmod(int(status.elapsed_s), 60)
    return (f"+{minutes:d}:{seconds:02d}  asked {status.rate:.1f} req/s  each pod: "
            f"{status.waiting} waiting, {status.running} running, KV cache "
            f"{status.kv_cache_usage:.0%}, {status.completed} completed, TTFT p50 "
            f"{status.ttft_p50_s:.2f} s")
