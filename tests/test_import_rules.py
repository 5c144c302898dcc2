"""The import contracts in pyproject.toml hold, and each one fails when it is broken.

Each case copies the packages, adds one module that imports what its contract forbids, and
runs ``lint-imports`` on the copy: it must fail naming that contract and that import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
        "sys.exit(lint_imports_command())"]

VIOLATIONS = [  # (contract name, the probe module, what it imports)
    ("The pure model does no I/O", "scaler/model/probe.py", "asyncio"),
    ("The pure model does no I/O", "scaler/model/probe.py", "yaml"),
    ("The pure model does no I/O", "scaler/model/probe.py", "scaler.service.service"),
    ("The pure model does no I/O", "scaler/model/probe.py", "adapters.sources.scrape"),
    ("The simulator runs without the service", "scaler/sim/probe.py", "scaler.service.workloads"),
    ("Config is read without the service", "scaler/config/probe.py", "kubernetes_asyncio"),
    ("Config is read without the service", "scaler/config/probe.py", "scaler.service.service"),
    ("Metric-format readers are pure", "adapters/formats/probe.py", "aiohttp"),
    ("Adapters know nothing of the scaler", "adapters/sources/probe.py", "scaler.model.specs"),
]


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(LINT, cwd=root, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    for package in ("scaler", "adapters"):
        shutil.copytree(ROOT / package, root / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.yaml", "*.proto"))
    shutil.copy(ROOT / "pyproject.toml", root)
    return root


def test_the_copy_keeps_every_contract(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("contract", "probe", "forbidden"), VIOLATIONS)
def test_a_forbidden_import_breaks_its_contract(tree: Path, contract: str, probe: str,
                                               forbidden: str) -> None:
    module = tree / probe
    module.write_text(f"import {forbidden}\n")
    try:
        result = _lint(tree)
    finally:
        module.unlink()
    out = result.stdout
    assert result.returncode != 0, out
    broken = out[out.index("Broken contracts"):]
    assert contract in broken, out
    importer = probe.removesuffix(".py").replace("/", ".")
    assert f"{importer} -> {forbidden}" in broken, out
