"""Replica profiles shipped with the scaler (``scaler/profiles/*.yaml``) and read from files.

The profile itself, and what its numbers mean, is ``scaler.model.profile.ReplicaProfile``;
this module only finds and reads the YAML, naming the file and every bad, missing or unknown
key at once.
"""

from __future__ import annotations

import functools
from pathlib import Path

import yaml

from scaler.model.profile import ReplicaProfile
from scaler.schema import Problem, build

PROFILES_DIR = Path(__file__).resolve().parents[1] / "profiles"
DEFAULT_PROFILE = "llama-8b-h100"


@functools.cache
def profile_names() -> frozenset[str]:
    """The names of the shipped profiles (file names without .yaml)."""
    return frozenset(path.stem for path in PROFILES_DIR.glob("*.yaml"))


def profile_path(name: str) -> Path:
    """The file of a shipped profile, by name."""
    return PROFILES_DIR / f"{name}.yaml"


def load_profile(path: str | Path) -> ReplicaProfile:
    """Read a profile YAML; ValueError naming the file and every bad, missing or unknown key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of profile keys, got {type(data).__name__}")
    profile, problems = build(ReplicaProfile, data)
    if profile is None:
        raise ValueError(f"{path}: " + "; ".join(_worded(p) for p in problems))
    return profile


def _worded(problem: Problem) -> str:
    if problem.kind == "unknown":
        return f"unknown key {problem.key!r}"
    if problem.kind == "required":
        return f"missing key {problem.key!r}"
    if problem.kind == "rule":
        return problem.detail
    accepted = problem.field.accepted if problem.field else problem.detail
    return f"key {problem.key!r}: expected {accepted}, got {problem.raw!r}"


@functools.cache
def default_profile() -> ReplicaProfile:
    """The packaged Llama-3.1-8B on 1x H100 profile."""
    return load_profile(profile_path(DEFAULT_PROFILE))
