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


def named_or_file(name_or_path: str | Path) -> ReplicaProfile:
    """A shipped profile by name (``llama-70b-tp4-h100``) or a profile YAML by path.

    ValueError naming the argument, the shipped names, and why the file could not be used.
    """
    text = str(name_or_path).strip()
    if text in profile_names():
        return load_profile(profile_path(text))
    path = Path(text)
    if not path.is_file():
        raise ValueError(f"{text!r} is neither a shipped profile ("
                         + ", ".join(sorted(profile_names())) + ") nor a profile file")
    try:
        return load_profile(path)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the file: {exc.strerror}") from exc


@functools.cache
def default_profile() -> ReplicaProfile:
    """The packaged Llama-3.1-8B on 1x H100 profile."""
    return load_profile(profile_path(DEFAULT_PROFILE))
