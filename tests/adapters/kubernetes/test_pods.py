"""The pod model: targets, a pod's JSON read into PodInfo, readiness and counts, selectors."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.kubernetes.errors import DiscoveryError
from adapters.kubernetes.pods import (
    PodCounts,
    PodInfo,
    WorkloadTarget,
    pod_info,
    selector_from_spec,
)

NS = "llm"
CREATED = "2026-05-01T10:00:00Z"
READY_AT = "2026-05-01T10:03:00Z"


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp()


def pod(name: str, *, node: str | None = "node-1", phase: str = "Running", ready: bool = False,
        ip: str | None = "127.0.0.11", finalizers: list[str] | None = None) -> dict[str, Any]:
    """A pod as the API server sends it (loopback IPs: nothing is ever scraped here)."""
    conditions = [{"type": "PodScheduled", "status": "True" if node else "False"}]
    conditions.append({"type": "Ready", "status": "True" if ready else "False",
                       "lastTransitionTime": READY_AT})
    status: dict[str, Any] = {"phase": phase, "conditions": conditions}
    if ip is not None:
        status["podIP"] = ip
    metadata: dict[str, Any] = {"name": name, "namespace": NS, "labels": {"app": "llama"},
                                "creationTimestamp": CREATED}
    if finalizers:
        metadata["finalizers"] = finalizers
    spec: dict[str, Any] = {"containers": [{"name": "vllm", "image": "vllm/vllm-openai"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec,
            "status": status}


def test_pod_info_and_metrics_url() -> None:
    info = pod_info(pod("p", node=None, phase="Pending", ip=None))
    assert info is not None and info.state == "pending" and info.metrics_url(8000, "/m") is None
    assert not info.scheduled and info.started_s is None
    assert pod_info({"metadata": {}}) is None
    six = PodInfo(name="p", namespace=NS, ip="fd00::5", phase="Running", ready=True,
                  created_s=0.0, started_s=None, node="n", deleting=False, scheduled=True)
    assert six.metrics_url(8000, "/metrics") == "http://[fd00::5]:8000/metrics"
    done = pod_info(pod("q", phase="Succeeded"))
    assert done is not None and done.state == "finished"


def test_readiness_goes_by_the_most_telling_fact_and_counts_skip_the_finished() -> None:
    gone = PodInfo(name="p", namespace=NS, ip=None, phase="Running", ready=True, created_s=0.0,
                   started_s=None, node="n", deleting=True, scheduled=True)
    done = dataclasses.replace(gone, deleting=False, phase="Failed")
    ready = dataclasses.replace(done, phase="Running")
    waiting = dataclasses.replace(ready, ready=False, phase="Pending", scheduled=False)
    pulling = dataclasses.replace(waiting, scheduled=True)
    lost = dataclasses.replace(pulling, phase="Unknown")
    pods = [gone, done, ready, waiting, pulling, lost]
    assert [p.state for p in pods] == [
        "terminating", "finished", "ready", "pending", "starting", "unknown"]
    assert PodCounts.of(pods) == PodCounts(ready=1, starting=1, pending=1, terminating=1)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kind": "selector", "name": "", "selector": None},
     "WorkloadTarget(kind='selector') needs a label selector such as 'app=llama', got None"),
    ({"kind": "selector", "name": "x", "selector": "app=x"},
     "WorkloadTarget(kind='selector') takes no name, got 'x'"),
    ({"kind": "Deployment", "name": "", "selector": None},
     "WorkloadTarget(kind='Deployment') needs the Deployment's name, got ''"),
    ({"kind": "StatefulSet", "name": "s", "selector": "app=x"},
     "WorkloadTarget(kind='StatefulSet') reads its selector from the StatefulSet's "
     "spec.selector; selector must be None, got 'app=x'"),
    ({"kind": "Job", "name": "j", "selector": None},
     "WorkloadTarget.kind must be 'Deployment', 'StatefulSet' or 'selector', got 'Job'"),
    ({"kind": "selector", "name": "", "selector": "a=b", "port": 0},
     "WorkloadTarget.port must be 1..65535, got 0"),
    ({"kind": "selector", "name": "", "selector": "a=b", "path": "metrics"},
     "WorkloadTarget.path must start with '/', got 'metrics'"),
])
def test_workload_target_names_the_bad_field(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as failure:
        WorkloadTarget(namespace=NS, **kwargs)
    assert str(failure.value) == message


def test_selector_from_spec() -> None:
    spec = {"spec": {"selector": {"matchExpressions": [
        {"key": "a", "operator": "Exists"}, {"key": "b", "operator": "NotIn", "values": ["x"]}]}}}
    assert selector_from_spec(spec, "StatefulSet llm/s") == "a,b notin (x)"
    with pytest.raises(DiscoveryError) as empty:
        selector_from_spec({"spec": {"selector": {}}}, "Deployment llm/d")
    assert str(empty.value) == (
        "Deployment llm/d has an empty spec.selector, which would select every pod in the "
        "namespace; refusing to use it")
    with pytest.raises(DiscoveryError) as no_values:
        selector_from_spec({"spec": {"selector": {"matchExpressions": [
            {"key": "b", "operator": "In", "values": []}]}}}, "Deployment llm/d")
    assert str(no_values.value) == (
        "Deployment llm/d: spec.selector.matchExpressions[0] (b In) needs a non-empty list of "
        "string values, got []")
