"""Every policy against the best reactive setup and the oracle, on every shared trace.

    python benchmarks/reactive_baselines.py [--only LABEL ...] [--table-only] [--out out/bench]

Runs ``scaler bench`` (all policies in one run, each knob swept, the cheapest setting meeting
the SLO kept) on the built-in synthetic workload, both 14-day ServeGen traces and the Azure
code trace at its real rate and x10, one after the other at ``nice 10``, then prints the
markdown table of BENCHMARKS.md's "Against the best reactive setup" section from the
``bench.json`` files (``--table-only`` prints it from an earlier run's files). Replay figures
are deterministic: the table is the same under any load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRACES = ROOT.parent / "shared" / "traces"
RUNS: dict[str, list[str]] = {
    "synthetic": [],
    "servegen_m-small_14d": ["--trace", str(TRACES / "servegen_m-small_14d.csv")],
    "servegen_m-mid_14d": ["--trace", str(TRACES / "servegen_m-mid_14d.csv")],
    "azure_llm_code_2023": ["--trace", str(TRACES / "azure_llm_code_2023.csv")],
    "azure_llm_code_2023 x10": ["--trace", str(TRACES / "azure_llm_code_2023.csv"),
                                "--rate-scale", "10"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=list(RUNS), help="trace label")
    parser.add_argument("--table-only", action="store_true", help="only print the table")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench")
    args = parser.parse_args()
    labels = args.only or list(RUNS)
    if not args.table_only:
        for label in labels:
            command = ["nice", "-n", "10", sys.executable, "-m", "scaler", "bench",
                       *RUNS[label], "--out", str(_folder(args.out, label))]
            print("$", " ".join(command), file=sys.stderr, flush=True)
            subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    print(table(args.out, labels))
    return 0


def _folder(out: Path, label: str) -> Path:
    return out / label.replace(" ", "_")


def table(out: Path, labels: list[str]) -> str:
    """The markdown table of every bench.json under ``out`` for these trace labels."""
    lines = ["| trace | policy | knob chosen | SLO | GPU-h | node-h | GPU-h / oracle | "
             "node-h / oracle | GPU-h / best reactive | node-h / best reactive |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label in labels:
        path = _folder(out, label) / "bench.json"
        if not path.exists():
            continue
        bench = json.loads(path.read_text())
        for name, row in bench["policies"].items():
            best = " (best reactive)" if name == bench["best_reactive"] else ""
            edge = " (grid edge)" if row.get("knob_at_edge") else ""
            knob = "-" if row["knob_value"] is None else f"{row['knob']}={row['knob_value']:g}"
            lines.append(
                f"| {label} | {name}{best} | {knob}{edge} | {100 * row['slo_attainment']:.2f} % "
                f"| {row['gpu_hours']:.1f} | {row['node_hours']:.1f} | "
                f"{_num(row['gpu_hours_vs_oracle'])} | {_num(row['node_hours_vs_oracle'])} | "
                f"{_num(row['gpu_hours_vs_best_reactive'])} | "
                f"{_num(row['node_hours_vs_best_reactive'])} |")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    raise SystemExit(main())
