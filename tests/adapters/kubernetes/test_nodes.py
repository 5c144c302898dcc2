"""Node actuators and Events against kmock over real HTTP, with the real kubernetes_asyncio client.

kmock's ``KubernetesEmulator`` stores objects and merges PATCHes, but knows nothing of
``resourceVersion``, of the ``scale`` subresource or of PUT. ``ApiServer`` below adds exactly
those API-server rules the actuators and the leader elector rely on (``test_leader`` uses it too):

- every write stamps a new ``metadata.resourceVersion``; a write that carries an older one is
  refused with 409 Conflict, as the real server does for a precondition (the version each write
  sent is kept in ``preconditions``: the stored request body shows the new one);
- GET and PATCH on ``.../scale`` answer an ``autoscaling/v1`` Scale built from the object;
- PUT replaces the whole object;
- ``meddle`` runs something just before the next write is checked (another writer racing us),
  ``fail_writes`` makes the next writes fail *before* they change anything (a kmock reaction
  with an error status would still let the emulator apply the write).
"""

from __future__ import annotations

import re

import pytest
from kubernetes_asyncio.client import (
    ApiClient,
    AppsV1Api,
    CoreV1Api,
    CustomObjectsApi,
)

from adapters.kubernetes.events import ObjectRef, post_event
from adapters.kubernetes.nodes import (
    MAX_SIZE_ANNOTATION,
    MIN_SIZE_ANNOTATION,
    ActuatorError,
    Conflict,
    DryRunActuator,
    MachineDeploymentActuator,
    PlaceholderActuator,
    ScaleResult,
    WriteWithheld,
)
from tests.kube_api import (
    DEPLOYMENTS,
    EVENTS,
    MD,
    NS,
    ApiServer,
    add_md,
    md_replicas,
    scale_patches,
)


@pytest.fixture
def client(api: ApiClient) -> ApiClient:
    return api


def bounds(lo: int | None = None, hi: int | None = None) -> dict[str, str]:
    found = {MIN_SIZE_ANNOTATION: lo, MAX_SIZE_ANNOTATION: hi}
    return {key: str(value) for key, value in found.items() if value is not None}


@pytest.fixture
def md(client: ApiClient) -> MachineDeploymentActuator:
    return MachineDeploymentActuator(CustomObjectsApi(client), NS, "pool")


async def test_machinedeployment_reads_and_patches_the_scale_subresource(
        server: ApiServer, md: MachineDeploymentActuator) -> None:
    add_md(server, 2, **bounds(1, 10))
    now = await md.current()
    assert (now.replicas, now.min, now.max) == (2, 1, 10)

    result = await md.scale(5, reason="forecast needs 5 nodes in 15 min")

    assert result == ScaleResult(True, 2, 5, None, "MachineDeployment gpu/pool: scaled 2 -> 5:"
                                                   " forecast needs 5 nodes in 15 min")
    assert md_replicas(server) == 5
    [patch] = scale_patches(server)
    assert patch.headers["Content-Type"] == "application/merge-patch+json"
    assert patch.url.path == ("/apis/cluster.x-k8s.io/v1beta1/namespaces/gpu"
                              "/machinedeployments/pool/scale")
    assert patch.data["spec"] == {"replicas": 5}
    assert server.preconditions == ["100"]  # the resourceVersion it read


async def test_machinedeployment_at_target_sends_no_patch(
        server: ApiServer, md: MachineDeploymentActuator) -> None:
    add_md(server, 3)
    result = await md.scale(3, reason="steady")
    assert not result.changed
    assert result.message == "MachineDeployment gpu/pool: kept at 3: steady"
    assert scale_patches(server) == []


@pytest.mark.parametrize(("desired", "to", "bound"), [(9, 6, "max"), (0, 2, "min"), (4, 4, None)])
async def test_machinedeployment_clamps_to_autoscaler_annotations(
        server: ApiServer, md: MachineDeploymentActuator, desired: int, to: int,
        bound: str | None) -> None:
    add_md(server, 3, **bounds(2, 6))
    result = await md.scale(desired, reason="plan")
    assert (result.to, result.clamped_by, md_replicas(server)) == (to, bound, to)
    if bound is not None:
        assert f"(wanted {desired}, clamped to {bound} size {to})" in result.message


async def test_machinedeployment_bad_annotation_is_named(
        server: ApiServer, md: MachineDeploymentActuator) -> None:
    add_md(server, 3, **{MAX_SIZE_ANNOTATION: "lots"})
    with pytest.raises(ActuatorError) as caught:
        await md.scale(4, reason="plan")
    assert str(caught.value) == (
        f"MachineDeployment gpu/pool: annotation '{MAX_SIZE_ANNOTATION}' has value 'lots'."
        " Not a non-negative integer.")
    assert scale_patches(server) == []


async def test_machinedeployment_inverted_annotations_are_named(
        server: ApiServer, md: MachineDeploymentActuator) -> None:
    add_md(server, 3, **bounds(5, 2))
    with pytest.raises(ActuatorError) as caught:
        await md.current()
    assert str(caught.value) == ("MachineDeployment gpu/pool: min-size annotation 5 >"
                                 " max-size annotation 2")


async def test_a_conflict_ends_the_attempt_without_a_retry(
        server: ApiServer, md: MachineDeploymentActuator) -> None:
    """The writer that got in between may be the new leader: its count stands, no re-read and
    re-patch over it (a stale leader's retry once overwrote the new leader's 3 with 10)."""
    add_md(server, 2, **bounds(1, 10))

    def new_leader_writes(api: ApiServer) -> None:  # between our read and our patch
        api.objects[MD, NS, "pool"].patch({"metadata": {"resourceVersion": api.bump()},
                                          "spec": {"replicas": 3}})

    server.meddle(new_leader_writes)
    with pytest.raises(Conflict) as caught:
        await md.scale(8, reason="plan")

    assert str(caught.value) == (
        "MachineDeployment gpu/pool: changed since it was read (409 Conflict: another writer"
        " got there first); not scaled to 8: the next round starts from what it wrote")
    assert isinstance(caught.value, ActuatorError)
    assert md_replicas(server) == 3
    assert len(scale_patches(server)) == 1
    assert [r.method for r in server].count("GET") == 2  # the one read (object, scale): no re-read


async def test_no_write_when_it_may_no_longer_write(
        server: ApiServer, md: MachineDeploymentActuator) -> None:
    add_md(server, 2)
    with pytest.raises(WriteWithheld) as caught:
        await md.scale(5, reason="plan", may_write=lambda: False)
    assert str(caught.value) == ("MachineDeployment gpu/pool: not scaled 2 -> 5: this replica"
                                 " may no longer write (it lost the Lease)")
    assert scale_patches(server) == [] and md_replicas(server) == 2


async def test_may_write_is_asked_after_the_read_just_before_the_write(
        server: ApiServer, md: MachineDeploymentActuator) -> None:
    add_md(server, 2)
    asked: list[int] = []

    def may_write() -> bool:
        asked.append(len(list(server)))
        return True

    await md.scale(5, reason="plan", may_write=may_write)
    assert asked == [2]  # after the two GETs, before the PATCH
    assert md_replicas(server) == 5


async def test_throttled_read_is_an_actuator_error(
        server: ApiServer, md: MachineDeploymentActuator) -> None:
    add_md(server, 2)
    server["get", MD] << 429 << {"kind": "Status", "code": 429, "reason": "TooManyRequests"}
    with pytest.raises(ActuatorError) as caught:
        await md.scale(5, reason="plan")
    assert str(caught.value) == ("MachineDeployment gpu/pool: the API server answered 429"
                                 " Too Many Requests to get; will retry next round")


async def test_server_error_on_patch_is_an_actuator_error(
        server: ApiServer, md: MachineDeploymentActuator) -> None:
    add_md(server, 2)
    server.fail_writes(500, "InternalError")
    with pytest.raises(ActuatorError) as caught:
        await md.scale(5, reason="plan")
    assert str(caught.value) == ("MachineDeployment gpu/pool: the API server answered 500"
                                 " Internal Server Error to patch scale; will retry next round")
    assert md_replicas(server) == 2


async def test_missing_machinedeployment_is_named(md: MachineDeploymentActuator) -> None:
    with pytest.raises(ActuatorError) as caught:
        await md.current()
    assert str(caught.value) == "MachineDeployment gpu/pool not found (404 on get)"


async def test_negative_desired_is_a_bug() -> None:
    with pytest.raises(ValueError, match="desired replicas must be >= 0, got -1"):
        await MachineDeploymentActuator(None, NS, "pool").scale(-1, reason="bug")  # type: ignore[arg-type]


def add_placeholders(server: ApiServer, replicas: int) -> None:
    server.objects[DEPLOYMENTS, NS, "gpu-placeholder"] = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "gpu-placeholder", "namespace": NS,
                     "resourceVersion": server.bump()},
        "spec": {"replicas": replicas}}


async def test_placeholder_deployment_replicas_set_within_bounds(
        server: ApiServer, client: ApiClient) -> None:
    add_placeholders(server, 1)
    placeholders = PlaceholderActuator(AppsV1Api(client), NS, "gpu-placeholder", min=0, max=4)

    result = await placeholders.scale(6, reason="warm 6 GPUs ahead")

    assert (result.changed, result.from_, result.to, result.clamped_by) == (True, 1, 4, "max")
    assert result.message == ("placeholder Deployment gpu/gpu-placeholder: scaled 1 -> 4"
                              " (wanted 6, clamped to max size 4): warm 6 GPUs ahead")
    assert server.objects[DEPLOYMENTS, NS, "gpu-placeholder"]["spec"]["replicas"] == 4
    assert (await placeholders.current()).replicas == 4


async def test_placeholder_conflict_ends_the_attempt(server: ApiServer,
                                                    client: ApiClient) -> None:
    add_placeholders(server, 1)
    server.fail_writes(409, "Conflict")
    with pytest.raises(Conflict):
        await PlaceholderActuator(AppsV1Api(client), NS, "gpu-placeholder").scale(
            3, reason="plan")
    assert server.objects[DEPLOYMENTS, NS, "gpu-placeholder"]["spec"]["replicas"] == 1
    assert len([r for r in server if r.method == "PATCH"]) == 1


def test_placeholder_bounds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match=r"^placeholder bounds: min 5 > max 2$"):
        PlaceholderActuator(None, NS, "p", min=5, max=2)  # type: ignore[arg-type]


async def test_dry_run_changes_nothing() -> None:
    dry = DryRunActuator(nodes_now=3)
    result = await dry.scale(7, reason="morning ramp")
    assert result == ScaleResult(False, 3, 7, None,
                                 "dry-run: would scale nodes from 3 to 7: morning ramp")
    assert (await dry.current()).replicas == 3
    assert dry.plans == [(7, "morning ramp")]


INVOLVED = ObjectRef("MachineDeployment", "pool", NS, "cluster.x-k8s.io/v1beta1", uid="u-1")


async def test_event_is_posted_with_the_right_fields(server: ApiServer, client: ApiClient) -> None:
    ok = await post_event(CoreV1Api(client), namespace=NS, involved=INVOLVED,
                          reason="NodesScaled", message="scaled 2 -> 5", type_="Normal",
                          clock=lambda: 1_764_000_000.25)
    assert ok
    [create] = [r for r in server if r.method == "POST"]
    assert create.url.path == "/api/v1/namespaces/gpu/events"
    sent = dict(create.data)
    meta = sent.pop("metadata")
    assert re.fullmatch(r"pool\.[0-9a-f]{16}", meta["name"]), meta["name"]
    assert meta["namespace"] == NS
    assert sent == {
        "involvedObject": {"kind": "MachineDeployment", "name": "pool", "namespace": NS,
                           "apiVersion": "cluster.x-k8s.io/v1beta1", "uid": "u-1"},
        "reason": "NodesScaled", "message": "scaled 2 -> 5", "type": "Normal",
        "source": {"component": "llm-predictive-scaler"},
        "reportingComponent": "llm-predictive-scaler",
        "firstTimestamp": "2025-11-24T16:00:00+00:00",
        "lastTimestamp": "2025-11-24T16:00:00+00:00", "count": 1}
    assert len([key for key in server.objects if key[0] == EVENTS]) == 1


async def test_event_failure_is_logged_not_raised(
        server: ApiServer, client: ApiClient, caplog: pytest.LogCaptureFixture) -> None:
    server.fail_writes(500, "InternalError")
    ok = await post_event(CoreV1Api(client), namespace=NS, involved=INVOLVED,
                          reason="NodesScaled", message="m", type_="Warning")
    assert not ok
    assert "could not post Event NodesScaled about MachineDeployment gpu/pool" in caplog.text
