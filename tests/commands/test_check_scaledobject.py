"""`scaler check-scaledobject`: a manifest's ScaledObjects refused offline as KEDA's calls would
be, with the gRPC path's own words."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from scaler.commands.check_scaledobject import problems_in
from scaler.commands.cli import main
from scaler.config.load import parse_config
from scaler.keda.proto import externalscaler_pb2 as pb

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "deploy/examples").glob("*.yaml"))

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: llama, namespace: llm}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: good, namespace: llm}
spec:
  triggers:
    - type: external
      metadata: {scalerAddress: "llm-predictive-scaler.llm-scaler.svc:9090", deployment: good}
    - type: external
      metadata: {scalerAddress: "other-scaler:9090", anything: goes}
    - type: cpu
      metadata: {value: "50"}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: bad, namespace: llm}
spec:
  pollingInterval: 30
  triggers:
    - type: external-push
      metadata:
        scalerAddress: llm-predictive-scaler:9090
        deployment: bad
        maxReplicas: "zero"
        podNamespace: other
        targetKvCacheUsage: 0.8
    - type: metrics-api
      metadata:
        url: "http://llm-predictive-scaler.llm-scaler.svc:8080/api/v1/namespaces/llm/scaledobjects/good?deployment=bad&metricName=m2&profile=llama-1b"
"""


def manifest(tmp_path: Path, text: str = MANIFEST) -> Path:
    path = tmp_path / "so.yaml"
    path.write_text(text)
    return path


def test_the_shipped_examples_and_config_maps_pass(capsys):
    assert main(["check-scaledobject", *map(str, EXAMPLES)]) == 0
    out = capsys.readouterr().out
    assert out.count(": OK\n") == 5 and "(metrics-api): OK" in out
    overlay = REPO / "deploy/overlays/example/scaler/config-patch.yaml"
    assert main(["check-scaledobject", "--config", str(overlay), *map(str, EXAMPLES)]) == 0


def test_each_trigger_of_this_scaler_is_checked_and_others_ignored(tmp_path):
    found = problems_in([manifest(tmp_path)])
    assert list(found) == [f"{tmp_path}/so.yaml: ScaledObject llm/good trigger 1 (external)",
                           f"{tmp_path}/so.yaml: ScaledObject llm/bad trigger 1 (external-push)",
                           f"{tmp_path}/so.yaml: ScaledObject llm/bad trigger 2 (metrics-api)"]
    good, push, api = found.values()
    assert good == []
    assert push == ["metadata key 'targetKvCacheUsage': 0.8 must be a string in YAML (KEDA's "
                    "metadata is strings; quote it: \"0.8\")"]
    assert api[0].startswith("url path names llm/good, not this ScaledObject llm/bad")


def push_problems(tmp_path: Path, text: str) -> list[str]:
    text = text.replace("targetKvCacheUsage: 0.8", "targetKvCacheUsage: \"0.8\"")
    return next(p for where, p in problems_in([manifest(tmp_path, text)]).items()
                if "external-push" in where)


@pytest.mark.parametrize(("fix", "says"), [
    ({}, "scalerMetadata key 'maxReplicas' has value 'zero'"),
    ({'maxReplicas: "zero"': 'maxReplicas: "8"'},
     "scalerMetadata key 'podNamespace' has value 'other': only pods of the ScaledObject's own "
     "namespace 'llm' are read"),
])
async def test_problems_are_the_grpc_paths_own_words(fix, says, tmp_path, app, keda):
    text = MANIFEST
    for old, new in fix.items():
        text = text.replace(old, new)
    push = push_problems(tmp_path, text)
    assert push[0].startswith(says), push
    metadata = {"scalerAddress": "llm-predictive-scaler:9090", "deployment": "bad",
                "maxReplicas": "8" if fix else "zero", "podNamespace": "other",
                "targetKvCacheUsage": "0.8"}
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await keda.GetMetricSpec(pb.ScaledObjectRef(name="bad", namespace="llm",
                                                    scalerMetadata=metadata))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "; ".join(push)


def test_the_config_applies_tuning_tenancy_and_the_polling_interval(tmp_path):
    config = parse_config("workloads:\n  idle_timeout_s: 31\ntenancy:\n  cross_namespace: true\n"
                          "tuning:\n  defaults: {maxReplicas: \"4\", minReplicas: \"9\"}\n")
    text = MANIFEST.replace('maxReplicas: "zero"', 'maxReplicas: "8"').replace(
        "targetKvCacheUsage: 0.8", "targetKvCacheUsage: \"0.8\"")
    found = problems_in([manifest(tmp_path, text)], config)
    good = found[f"{tmp_path}/so.yaml: ScaledObject llm/good trigger 1 (external)"]
    assert good and "'minReplicas' (9) is greater than 'maxReplicas' (4)" in good[0]
    text = text.replace("pollingInterval: 30", "pollingInterval: 40")
    push = problems_in([manifest(tmp_path, text)], config)[
        f"{tmp_path}/so.yaml: ScaledObject llm/bad trigger 1 (external-push)"]
    assert push[0].startswith("pollingInterval (40 s) must be below the scaler's "
                              "workloads.idle_timeout_s (31 s)")


def test_the_command_exits_1_naming_each_problem(tmp_path, capsys):
    assert main(["check-scaledobject", str(manifest(tmp_path))]) == 1
    out = capsys.readouterr().out
    assert "ScaledObject llm/good trigger 1 (external): OK" in out
    assert "ScaledObject llm/bad trigger 1 (external-push): 1 problem(s)\n  metadata key" in out


def test_an_hpa_that_would_not_carry_the_answer_out_is_noted(tmp_path, capsys):
    """No ``behavior``: the HPA's 10% tolerance leaves a plan of 21 over 20 at 20, and its 300 s
    scale-down window delays each scale-down the scaler already held for its own window."""
    assert main(["check-scaledobject", str(manifest(tmp_path))]) == 1
    good = capsys.readouterr().out.split("trigger 1 (external): OK\n", 1)[1].split("\n")
    assert good[0].startswith("  note: the HPA's tolerance (0.1 up, 0.1 down) leaves")
    assert good[1].startswith("  note: the HPA's scale-down window (300 s) comes on top")
    exact = MANIFEST.replace("spec:\n  triggers:", """spec:
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleUp: {tolerance: 0}
        scaleDown: {tolerance: "0", stabilizationWindowSeconds: 0}
  triggers:""", 1)
    main(["check-scaledobject", str(manifest(tmp_path, exact))])
    assert "note: the HPA" not in capsys.readouterr().out.split("llm/bad")[0]
    main(["check-scaledobject", *map(str, EXAMPLES)])
    assert "note: the HPA" not in capsys.readouterr().out


def test_static_endpoints_without_the_hpas_scale_down_window_are_noted(tmp_path, capsys):
    """Static endpoints list serving pods only: the scaler cannot see replicas still starting
    (the demo's predictive side flapped 21 -> 15 without the HPA's window)."""
    text = """\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: static, namespace: llm}
spec:
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleUp: {tolerance: 0}
        scaleDown: {tolerance: 0, stabilizationWindowSeconds: 0}
  triggers:
    - type: external
      metadata:
        scalerAddress: llm-predictive-scaler.llm-scaler.svc:9090
        endpoints: "http://10.0.3.17:8000/metrics"
"""
    assert main(["check-scaledobject", str(manifest(tmp_path, text))]) == 0
    assert "note: with static endpoints the scaler sees only the pods listed" in (
        capsys.readouterr().out)
    kept = text.replace(", stabilizationWindowSeconds: 0", "")
    assert main(["check-scaledobject", str(manifest(tmp_path, kept))]) == 0
    assert "note:" not in capsys.readouterr().out


def test_a_malformed_behavior_is_a_note_not_a_traceback(tmp_path, capsys):
    for advanced in ('"oops"', "{horizontalPodAutoscalerConfig: {behavior: [1]}}",
                     "{horizontalPodAutoscalerConfig: {behavior: {scaleUp: {policies: [{}]}}}}"):
        text = f"""\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {{name: x, namespace: llm}}
spec:
  advanced: {advanced}
  triggers:
    - type: external
      metadata: {{scalerAddress: "llm-predictive-scaler:9090", deployment: x}}
"""
        assert main(["check-scaledobject", str(manifest(tmp_path, text))]) == 0
        out = capsys.readouterr().out
        assert "trigger 1 (external): OK" in out, advanced
        if advanced != '"oops"':  # no behavior at all: the default HPA's notes
            assert "note: advanced.horizontalPodAutoscalerConfig.behavior not read" in out
