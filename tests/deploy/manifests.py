"""The deploy manifests as the tests read them: rendered kustomizations, example files, configs.

Shared by test_manifests.py and test_rbac_matches_code.py, so each kustomization is rendered
once per run. ``kubectl kustomize`` renders (the tests fail, not skip, without kubectl:
Debian's ``kubernetes-client`` package provides it).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from scaler.config.load import parse_config
from scaler.config.settings import ServiceConfig

Obj = dict[str, Any]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
EXAMPLES = DEPLOY / "examples"
KUSTOMIZATIONS = {"base": DEPLOY / "base", "overlay": DEPLOY / "overlays" / "example"}
CONFIG_KEY = "config.yaml"
SCALER = "llm-predictive-scaler"  # the name of the scaler's own objects


def docs(text: str) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@functools.cache
def kustomize(name: str) -> tuple[Obj, ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not installed: the deploy tests render the kustomizations with "
                    "`kubectl kustomize` (Debian/Ubuntu: apt-get install kubernetes-client)")
    result = subprocess.run([kubectl, "kustomize", str(KUSTOMIZATIONS[name])],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"kubectl kustomize {name} failed:\n{result.stderr}"
    return tuple(docs(result.stdout))


@functools.cache
def example_files() -> dict[str, tuple[Obj, ...]]:
    return {path.name: tuple(docs(path.read_text(encoding="utf-8")))
            for path in sorted(EXAMPLES.glob("*.yaml"))}


def objects(source: str) -> list[Obj]:
    """A kustomization's rendered objects ("base", "overlay") or every example's ("examples")."""
    if source == "examples":
        return [obj for objs in example_files().values() for obj in objs]
    return list(kustomize(source))


def example(file: str) -> list[Obj]:
    return list(example_files()[file])


def one(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = all_of(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def all_of(objs: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind
            and (name is None or o["metadata"]["name"] == name)]


def config_text(objs: list[Obj]) -> str:
    data = one(objs, "ConfigMap")["data"]
    assert CONFIG_KEY in data, f"the ConfigMap has no {CONFIG_KEY!r} key"
    text: str = data[CONFIG_KEY]
    return text


def config(objs: list[Obj]) -> ServiceConfig:
    return parse_config(config_text(objs), source="ConfigMap")


def deployment(objs: list[Obj]) -> Obj:
    return one(objs, "Deployment", SCALER)


def placeholder_config() -> ServiceConfig:
    """The config snippet in placeholder.yaml's header, uncommented."""
    text = (EXAMPLES / "placeholder.yaml").read_text(encoding="utf-8")
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#   node_pools:"))
    snippet = []
    for line in lines[start:]:
        if not line.startswith("#   "):
            break
        snippet.append(line[4:])
    return parse_config("\n".join(snippet), source="placeholder.yaml")
