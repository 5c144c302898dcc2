"""Where a policy's GPU-hours over the oracle's go, day by day, next to how much demand jumps.

    python benchmarks/cost_by_day.py POLICY_RUN ORACLE_RUN

Each argument is the ``--out`` folder of a ``scaler replay`` on the same trace (its
``decisions.csv``: one row per decision, every 15 s). Per day of the trace it prints the
policy's GPU-hours and node-hours over the oracle's (of ready replicas and ready nodes, one
GPU per replica: a little under the replay's own totals, which count starting replicas too),
the share of the day's requests the policy missed the SLO for, and the median and 90th
percentile of the demand's change from one 10-minute bin to the next over its level: the
oracle follows each bin, while a causal plan has to cover the next bin's change a pod
start-up before it shows, so its cost over the oracle grows with that volatility.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scaler.sim import report

DAY_S = 86400.0
BIN_S = 600.0

Columns = dict[str, npt.NDArray[np.float64]]


def read_decisions(folder: Path) -> Columns:
    """A replay's decisions.csv (``scaler.sim.report.read_decisions``) as columns."""
    path = folder / "decisions.csv"
    if not path.is_file():
        raise SystemExit(f"cost_by_day: no decisions.csv in {folder} (give a `scaler replay "
                         "--out` folder)")
    rows = report.read_decisions(path)
    names = ("time_s", "ready_replicas", "ready_nodes", "demand", "slo_misses")
    return {n: np.array([float(getattr(r, n)) for r in rows]) for n in names}


def per_day(values: npt.NDArray[np.float64], time_s: npt.NDArray[np.float64]) -> (
        npt.NDArray[np.float64]):
    """Sum of each day's values."""
    day = (time_s // DAY_S).astype(int)
    return np.asarray(np.bincount(day, weights=values), dtype=np.float64)


def bin_jumps(c: Columns) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Each 10-minute bin's day and its demand's change from the bin before, over that level."""
    b = (c["time_s"] // BIN_S).astype(int)
    counts = np.bincount(b)
    mean = np.bincount(b, weights=c["demand"]) / np.maximum(counts, 1)
    jump = np.abs(np.diff(mean)) / np.maximum(mean[:-1], 1e-9)
    day = (np.arange(1, mean.size) * BIN_S // DAY_S).astype(int)
    return day, jump


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy", type=Path, help="scaler replay --out folder of the policy")
    parser.add_argument("oracle", type=Path, help="scaler replay --out folder of the oracle")
    args = parser.parse_args()
    p, o = read_decisions(args.policy), read_decisions(args.oracle)
    tick_h = float(np.median(np.diff(p["time_s"]))) / 3600.0
    gpu_p, gpu_o = (per_day(c["ready_replicas"], c["time_s"]) * tick_h for c in (p, o))
    node_p, node_o = (per_day(c["ready_nodes"], c["time_s"]) * tick_h for c in (p, o))
    missed = per_day(p["slo_misses"], p["time_s"])
    served = per_day(p["demand"], p["time_s"]) * tick_h * 3600.0
    day, jump = bin_jumps(p)
    print(f"{'day':>4}{'GPU-h':>10}{'oracle':>10}{'GPU-h/o':>9}{'node-h/o':>9}{'missed':>9}"
          f"{'jump p50':>10}{'jump p90':>10}")
    for d in range(gpu_p.size):
        jumps = jump[day == d]
        p50, p90 = (float(np.quantile(jumps, q)) if jumps.size else float("nan")
                    for q in (0.5, 0.9))
        print(f"{d:>4}{gpu_p[d]:10.1f}{gpu_o[d]:10.1f}{gpu_p[d] / gpu_o[d]:9.2f}"
              f"{node_p[d] / node_o[d]:9.2f}{missed[d] / served[d]:9.2%}{p50:10.3f}{p90:10.3f}")
    print(f"{'all':>4}{gpu_p.sum():10.1f}{gpu_o.sum():10.1f}{gpu_p.sum() / gpu_o.sum():9.2f}"
          f"{node_p.sum() / node_o.sum():9.2f}{missed.sum() / served.sum():9.2%}"
          f"{float(np.median(jump)):10.3f}{float(np.quantile(jump, 0.9)):10.3f}")


if __name__ == "__main__":
    main()
