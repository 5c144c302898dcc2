"""`scaler bench`: every policy on one trace, each at the cheapest knob meeting the SLO.

The oracle is swept too (its knob is the miss share it plans for; its misses are only
expected ones), so its row is the cheapest clairvoyant run that really meets the SLO in this
replay: the floor. ``best_reactive`` names the cheapest reactive policy meeting the SLO, the
baseline a competent user would run without this scaler; every row is also given as a ratio
of it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from scaler.commands.flags import REPLAY_POLICIES
from scaler.commands.knob_search import Runner, cheapest_meeting_slo
from scaler.commands.replay import load_replay_inputs
from scaler.sim.comparison import write_comparison
from scaler.sim.policy_catalog import REACTIVE, canonical
from scaler.sim.results import ReplayResult

Row = dict[str, float | str | bool | None]


def run_bench(args: argparse.Namespace) -> int:
    loaded = load_replay_inputs(args)
    if loaded is None:
        return 2
    trace, settings, profile = loaded
    names = list(dict.fromkeys(canonical(n) for n in args.policy or REPLAY_POLICIES))
    runner = Runner(trace, settings, profile, names)
    oracle = cheapest_meeting_slo("oracle", runner, peak=1)
    peak = max((r.desired_replicas for r in oracle.decisions), default=1)
    chosen: dict[str, ReplayResult] = {}
    for name in names:
        chosen[name] = oracle if name == "oracle" else cheapest_meeting_slo(name, runner,
                                                                            peak=peak)
        chosen[name].parameters["rate_scale"] = args.rate_scale
    best = best_reactive(chosen, settings.slo_target)
    report = {name: bench_row(result, oracle, chosen[best] if best else None)
              for name, result in chosen.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(
        {"trace": trace.name, "slo_ttft_s": settings.slo_ttft_s,
         "slo_target": settings.slo_target, "best_reactive": best, "policies": report},
        indent=2) + "\n")
    write_comparison(list(chosen.values()), args.out / "bench.md", args.out / "bench.png",
                     best_reactive=best)
    for name, row in report.items():
        edge = "  (knob at its grid's edge)" if row["knob_at_edge"] else ""
        print(f"{name:>20}: {row['knob']}={row['knob_value']}  SLO "
              f"{float(row['slo_attainment'] or 0):.2%}  GPU-h {row['gpu_hours']:.1f}  "
              f"node-h {row['node_hours']:.1f}  GPU-h vs oracle {row['gpu_hours_vs_oracle']}  "
              f"vs best reactive {row['gpu_hours_vs_best_reactive']}{edge}")
    print(f"best reactive: {best or 'none reached the SLO target'}")
    print(f"  {args.out / 'bench.json'}\n  {args.out / 'bench.md'}")
    sys.stdout.flush()
    return 0


def best_reactive(chosen: dict[str, ReplayResult], slo_target: float) -> str | None:
    """The cheapest (GPU-hours) reactive policy meeting the SLO target, if any does."""
    meeting = [(r.gpu_hours, name) for name, r in chosen.items()
               if name in REACTIVE and r.slo_attainment >= slo_target]
    return min(meeting)[1] if meeting else None


def bench_row(result: ReplayResult, oracle: ReplayResult,
              baseline: ReplayResult | None) -> Row:
    knob = result.parameters.get("knob_value")
    return {
        "knob": str(result.parameters.get("knob")),
        "knob_value": None if knob is None or (isinstance(knob, float) and math.isnan(knob))
        else float(knob),
        "knob_at_edge": bool(result.parameters.get("knob_at_edge", False)),
        "gpu_hours": result.gpu_hours, "node_hours": result.node_hours,
        "slo_attainment": result.slo_attainment,
        "gpu_hours_vs_oracle": _ratio(result.gpu_hours, oracle.gpu_hours),
        "node_hours_vs_oracle": _ratio(result.node_hours, oracle.node_hours),
        "gpu_hours_vs_best_reactive": None if baseline is None
        else _ratio(result.gpu_hours, baseline.gpu_hours),
        "node_hours_vs_best_reactive": None if baseline is None
        else _ratio(result.node_hours, baseline.node_hours),
    }


def _ratio(value: float, reference: float) -> float | None:
    return round(value / reference, 3) if reference > 0 else None
