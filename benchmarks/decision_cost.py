"""What one decision costs: the service's decision step for one 8-pod workload.

    python benchmarks/decision_cost.py [--rounds 3000]

Eight emulated vLLM pods (real pages over HTTP) are scraped until every pod has a rate window,
then ``WorkloadRunner.decide`` (health check, observation, reactive rule, predictive plan,
telemetry listeners) is timed in a loop for a predictive workload, against the same workload
with ``policy: reactive`` measured in the same run as the baseline. At 1,000 workloads scraped
every 5 s the service makes 200 decisions a second.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scaler.config.settings import ServiceConfig
from scaler.service.service import ScalerService
from scaler.sim.emulation.engine_state import EngineState
from scaler.sim.emulation.pod_server import EmulatedVllmPod
from tests.clock import ManualClock


async def per_decision_us(policy: str, pods: list[EmulatedVllmPod], rounds: int) -> float:
    clock = ManualClock()
    service = ScalerService(ServiceConfig(), clock=clock, background=False)
    await service.start()
    try:
        workload = service.resolve("ns", policy, {
            "endpoints": ",".join(p.url for p in pods), "policy": policy})
        for _ in range(8):  # 40 s of traffic: every pod's rate window is full
            for pod in pods:
                engine = pod.engines[0]
                engine.request_success["stop"] += 50
                engine.prompt_tokens += 50 * 600
                engine.generation_tokens += 50 * 200
            clock.advance(5)
            await service.scrape(workload)
        runner = service.runners[workload.key]
        started = time.perf_counter()
        for _ in range(rounds):
            runner.decide()
        return (time.perf_counter() - started) / rounds * 1e6
    finally:
        await service.stop()


async def main(rounds: int) -> None:
    pods = [EmulatedVllmPod([EngineState(running=20, waiting=1, kv_cache_usage=0.3)])
            for _ in range(8)]
    for pod in pods:
        await pod.start()
    try:
        reactive = await per_decision_us("reactive", pods, rounds)
        predictive = await per_decision_us("predictive", pods, rounds)
    finally:
        for pod in pods:
            await pod.stop()
    print(f"reactive (baseline): {reactive:.0f} us per decision")
    print(f"predictive:          {predictive:.0f} us per decision "
          f"({predictive / reactive:.2f}x the baseline; {200 * predictive / 1e6:.3f} CPU s/s "
          "at 200 decisions/s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3000)
    asyncio.run(main(parser.parse_args().rounds))
