"""The PrometheusRule: a valid custom resource, valid rules, and promtool unit tests that show
every alert both firing and staying quiet (deploy/prometheus/alerts-test.yaml)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import SHARED

ROOT = Path(__file__).resolve().parents[2]
RULE = ROOT / "deploy" / "base" / "prometheusrule.yaml"
UNIT_TESTS = ROOT / "deploy" / "prometheus" / "alerts-test.yaml"
RULES_NAME = "alerts.rules.yaml"  # the name alerts-test.yaml's rule_files expects beside it
CRD = SHARED / "crds" / "monitoring.coreos.com_prometheusrules.yaml"
SEVERITIES = {"critical", "warning", "info"}

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="needs promtool from the Debian prometheus package (.ci/run installs it)")


def rule_document() -> dict[str, Any]:
    document = yaml.safe_load(RULE.read_text())
    assert isinstance(document, dict), f"{RULE}: not a YAML mapping"
    return document


def alerts() -> list[dict[str, Any]]:
    return [rule for group in rule_document()["spec"]["groups"] for rule in group["rules"]
            if "alert" in rule]


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """The PrometheusRule's spec as a plain rule file, next to a copy of the unit tests."""
    (tmp_path / RULES_NAME).write_text(yaml.safe_dump(rule_document()["spec"], sort_keys=False))
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    return tmp_path


def promtool(*args: str, cwd: Path) -> None:
    run = subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 0, (
        f"promtool {' '.join(args)} failed (exit {run.returncode}); rules from "
        f"{RULE.relative_to(ROOT)}, tests in {UNIT_TESTS.relative_to(ROOT)}:\n"
        f"{run.stdout}\n{run.stderr}")


def test_the_prometheusrule_is_a_valid_custom_resource() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    crd = yaml.safe_load(CRD.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    document = rule_document()
    assert document["apiVersion"] == "monitoring.coreos.com/v1"
    assert document["kind"] == crd["spec"]["names"]["kind"]
    assert document["metadata"]["name"] == "llm-predictive-scaler"
    assert document["metadata"]["labels"]["app.kubernetes.io/name"] == "llm-predictive-scaler"
    problems = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                for e in jsonschema.Draft7Validator(
                    version["schema"]["openAPIV3Schema"]).iter_errors(document)]
    assert not problems, f"{RULE.relative_to(ROOT)} does not match the CRD:\n" + "\n".join(
        problems)


def test_every_alert_has_a_severity_and_says_what_to_do() -> None:
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    for rule in alerts():
        name = rule["alert"]
        assert rule.get("labels", {}).get("severity") in SEVERITIES, (
            f"{name}: severity label must be one of {sorted(SEVERITIES)}")
        annotations = rule.get("annotations", {})
        for key in ("summary", "description"):
            assert str(annotations.get(key, "")).strip(), f"{name}: no {key} annotation"


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load(UNIT_TESTS.read_text())
    assert tests["rule_files"] == [RULES_NAME]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert not names - firing, f"alerts never tested firing: {sorted(names - firing)}"
    assert not names - quiet, f"alerts never tested staying quiet: {sorted(names - quiet)}"
    assert not (firing | quiet) - names, (
        f"unit tests name unknown alerts: {sorted((firing | quiet) - names)}")


@needs_promtool
def test_promtool_accepts_the_rules(rules_dir: Path) -> None:
    promtool("check", "rules", RULES_NAME, cwd=rules_dir)


@needs_promtool
def test_promtool_unit_tests_pass(rules_dir: Path) -> None:
    promtool("test", "rules", UNIT_TESTS.name, cwd=rules_dir)
