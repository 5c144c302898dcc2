"""How long a replay takes: every trace in ../shared/traces/, one policy each.

    python benchmarks/replay_speed.py [--policy reactive]

Goals (issue #3): a 14-day rate-series replay of one policy under 30 s, the 1-hour
Azure request-level replay under 60 s, on 2 cores. Baseline in the same run: the
same replay under the static policy (the fleet model and the loop with a policy
that costs nothing), so the ratio is what the decision path adds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scaler.config.profiles import default_profile
from scaler.sim.policy_catalog import make_policy
from scaler.sim.replay import ReplaySettings, replay
from scaler.sim.traces import read_trace

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"
GOALS_S = {"azure_llm_code_2023": 60.0}
DEFAULT_GOAL_S = 30.0


def timed(trace_path: Path, policy: str) -> tuple[float, float]:
    trace = read_trace(trace_path)
    settings, profile = ReplaySettings(), default_profile()
    started = time.perf_counter()
    result = replay(trace, make_policy(policy, None, trace, settings, profile), settings=settings,
                    profile=profile)
    return time.perf_counter() - started, result.requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="reactive")
    args = parser.parse_args()
    for path in sorted(TRACES.glob("*.csv")):
        base_s, _ = timed(path, "static")
        ours_s, requests = timed(path, args.policy)
        goal = GOALS_S.get(path.stem, DEFAULT_GOAL_S)
        print(f"{path.stem:>24}: {args.policy} {ours_s:6.2f} s ({requests:,.0f} requests) | "
              f"static baseline {base_s:6.2f} s | ratio {ours_s / base_s:4.2f}x | "
              f"goal < {goal:g} s: {'met' if ours_s < goal else 'MISSED'}")


if __name__ == "__main__":
    main()
