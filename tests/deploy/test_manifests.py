"""Deploy manifests: they render, the API server would take them, and they agree with the code.

- ``deploy/base`` and ``deploy/overlays/example`` are rendered with ``kubectl kustomize`` (the
  tests fail, not skip, without kubectl: Debian's ``kubernetes-client`` package provides it).
- Built-in kinds are checked with ``kubernetes-validate`` (strict: unknown fields fail) against
  the oldest Kubernetes release the manifests target; custom resources against the
  ``openAPIV3Schema`` of their CRD in ``../shared/crds`` (upstream files), made strict the same
  way, so a misspelt field fails as ``kubectl apply --validate=strict`` would.
- The config in the ConfigMaps goes through ``scaler validate-config``; the RBAC rules are
  compared with the README's table; the ScaledObjects' trigger metadata goes through the
  scaler's own parser; ports, probes, labels and names are followed from one object to the next.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from adapters.kubernetes.nodes import MAX_SIZE_ANNOTATION, MIN_SIZE_ANNOTATION
from scaler.commands import cli
from scaler.config.load import describe
from scaler.config.node_pools import ACTUATORS, NodePool
from scaler.config.settings import ServerSettings, ServiceConfig, TuningSettings
from scaler.keda.http_server import DECISION_ROUTE
from scaler.keda.metadata import MetadataError, parse_metadata
from scaler.sim.hpa import SCALEDOBJECT_BEHAVIOR, HpaBehavior, behavior_from_spec
from tests.deploy import manifests as m
from tests.deploy.manifests import CONFIG_KEY, EXAMPLES, KUSTOMIZATIONS, ROOT, Obj

CRDS = ROOT.parent / "shared" / "crds"
BASE_NAMESPACE = "llm-scaler"
# The oldest Kubernetes minor the manifests are meant for (kubernetes-validate ships schemas
# from 1.25 on; 1.30 is the oldest release still widely run).
KUBERNETES_VERSION = "1.30.0"
# Custom resources without a CRD in ../shared/crds: only their envelope is checked.
NO_CRD_GROUPS = {"kaito.sh"}


# --- helpers -----------------------------------------------------------------------------


def _group(obj: Obj) -> str:
    api_version: str = obj["apiVersion"]
    return api_version.split("/")[0] if "/" in api_version else ""


def _container(deployment: Obj) -> Obj:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "the scaler's pod has one container"
    container: Obj = containers[0]
    return container


def _named_port(container: Obj, name: str) -> int:
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    assert name in ports, f"container {container['name']} has no port named {name!r}"
    port: int = ports[name]
    return port


def _matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# --- rendering -----------------------------------------------------------------------------

SCALER_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                "RoleBinding", "ConfigMap", "Deployment", "Service", "NetworkPolicy",
                "PodDisruptionBudget", "ServiceMonitor", "PodMonitor", "PrometheusRule"}
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding"}


@pytest.mark.parametrize("source", sorted(KUSTOMIZATIONS))
def test_kustomization_renders_the_scaler_in_one_namespace(source: str) -> None:
    """Every object of the scaler in its namespace; only an acting node pool's Role and
    RoleBinding live elsewhere, in the pool's namespace."""
    objs = m.objects(source)
    assert {o["kind"] for o in objs} == SCALER_KINDS
    namespace = m.deployment(objs)["metadata"]["namespace"]
    pools = {p.namespace for p in m.config(objs).node_pools.pools if p.actuator != "dry-run"}
    for obj in objs:
        meta = obj["metadata"]
        assert meta["labels"]["app.kubernetes.io/name"] == "llm-predictive-scaler", meta["name"]
        if obj["kind"] not in CLUSTER_SCOPED and meta.get("namespace") != namespace:
            assert obj["kind"] in ("Role", "RoleBinding") and meta.get("namespace") in pools, \
                f"{obj['kind']} {meta['name']} in {meta.get('namespace')}"
    if source == "base":
        assert namespace == BASE_NAMESPACE
        assert not pools, "the base acts on no node pool"
    else:
        assert namespace != BASE_NAMESPACE, "the example overlay moves the scaler"
        assert pools, "the example overlay acts on a node pool"


# --- schemas -------------------------------------------------------------------------------


def _custom_groups() -> set[str]:
    return {crd["spec"]["group"] for crd in _crds()} | NO_CRD_GROUPS


@functools.cache
def _crds() -> tuple[Obj, ...]:
    files = sorted(CRDS.glob("*.yaml"))
    assert files, f"no CRDs found in {CRDS}"
    return tuple(doc for path in files for doc in m.docs(path.read_text(encoding="utf-8"))
                 if doc.get("kind") == "CustomResourceDefinition")


def _strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever the API server would prune them."""
    if isinstance(schema, dict):
        out = {key: _strict(value) for key, value in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@functools.cache
def _crd_validator(group: str, kind: str, version: str) -> jsonschema.Draft4Validator:
    for crd in _crds():
        spec = crd["spec"]
        if spec["group"] != group or spec["names"]["kind"] != kind:
            continue
        for served in spec["versions"]:
            if served["name"] == version and served.get("served", False):
                schema = _strict(copy.deepcopy(served["schema"]["openAPIV3Schema"]))
                return jsonschema.Draft4Validator(schema)
        pytest.fail(f"the CRD of {kind}.{group} in {CRDS.name} serves no version {version}")
    pytest.fail(f"no CRD for {kind}.{group} in {CRDS.name}")


def _crd_errors(obj: Obj) -> list[str]:
    group, version = obj["apiVersion"].split("/")
    validator = _crd_validator(group, obj["kind"], version)
    return [f"{obj['kind']} {obj['metadata']['name']}: {'.'.join(map(str, e.absolute_path))}: "
            f"{e.message}" for e in validator.iter_errors(obj)]


def _envelope_errors(obj: Obj) -> list[str]:
    """A custom resource without a CRD here (KAITO): only apiVersion, kind and metadata."""
    problems = []
    if not re.fullmatch(r"[a-z0-9.-]+/v\d+((alpha|beta)\d+)?", obj.get("apiVersion", "")):
        problems.append(f"apiVersion {obj.get('apiVersion')!r} is not group/version")
    if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", obj.get("kind", "")):
        problems.append(f"kind {obj.get('kind')!r} is not a Kind")
    meta = obj.get("metadata", {})
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", meta.get("name", "")):
        problems.append(f"metadata.name {meta.get('name')!r} is not a DNS label")
    if not isinstance(obj.get("spec"), dict):
        problems.append("spec is not a mapping")
    return problems


SOURCES = [*sorted(KUSTOMIZATIONS), "examples"]


@pytest.mark.parametrize("source", SOURCES)
def test_built_in_kinds_pass_the_kubernetes_openapi_schemas(source: str) -> None:
    custom = _custom_groups()
    checked, problems = 0, []
    for obj in m.objects(source):
        if _group(obj) in custom:
            continue
        checked += 1
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{obj['kind']} {obj['metadata']['name']}: "
                            f"{'.'.join(map(str, exc.path))}: {exc.message}")
    assert checked > 0
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("source", SOURCES)
def test_custom_resources_pass_their_crd_schemas(source: str) -> None:
    checked, problems = 0, []
    for obj in m.objects(source):
        group = _group(obj)
        if group not in _custom_groups():
            continue
        checked += 1
        problems += (_envelope_errors(obj) if group in NO_CRD_GROUPS else _crd_errors(obj))
    assert checked > 0
    assert not problems, "\n".join(problems)


def test_crd_check_refuses_a_misspelt_field() -> None:
    """The CRD check is strict: a typo in a ScaledObject is an error, not pruned silently."""
    scaled = copy.deepcopy(m.one(m.example("scaledobject-vllm.yaml"), "ScaledObject"))
    assert _crd_errors(scaled) == []
    scaled["spec"]["pollingIntreval"] = 15
    assert any("pollingIntreval" in p for p in _crd_errors(scaled))


# --- the config ------------------------------------------------------------------------------


@pytest.mark.parametrize("source", sorted(KUSTOMIZATIONS))
def test_configmap_passes_scaler_validate_config(source: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / CONFIG_KEY
    path.write_text(m.config_text(m.objects(source)), encoding="utf-8")
    assert cli.main(["validate-config", str(path)]) == 0, capsys.readouterr().err


def test_base_config_keeps_every_default_but_the_lease_namespace() -> None:
    defaults = ServiceConfig()
    expected = dataclasses.replace(defaults, node_pools=dataclasses.replace(
        defaults.node_pools, lease_namespace=BASE_NAMESPACE))
    assert m.config(m.objects("base")) == expected


def _key_lines(node: yaml.Node, prefix: str = "") -> Iterator[tuple[str, int]]:
    """(dotted key, 0-based line) of every mapping key in a composed YAML document."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = f"{prefix}{key.value}"
            yield path, key.start_mark.line
            yield from _key_lines(value, f"{path}.")


def _documented_keys() -> list[str]:
    """Every setting: `scaler settings` rows, and the keys inside the structured sections."""
    keys = [key for key, _, _ in describe() if "<name>" not in key]  # pools: see below
    assert "tuning" in keys, "`scaler settings` no longer lists tuning"
    keys.remove("tuning")
    keys += [f"tuning.{f.name}" for f in dataclasses.fields(TuningSettings)]
    return keys


def test_base_config_documents_every_setting_with_unit_and_default() -> None:
    text = m.config_text(m.objects("base"))
    lines = text.splitlines()
    document = yaml.compose(text)
    assert document is not None, "the base config is empty"
    where = dict(_key_lines(document))
    problems = []
    for key in _documented_keys():
        if key not in where:
            problems.append(f"{key}: not in the base config")
            continue
        _, hash_, comment = lines[where[key]].partition("#")
        if not hash_ or "default" not in comment:
            problems.append(f"{key}: its line has no comment naming the default")
    pool_keys = [f.name for f in dataclasses.fields(NodePool) if f.name != "name"]
    for key in pool_keys:  # a pool's keys are documented in the commented example pool
        if not re.search(rf"^\s*#\s+{key}: .*#.*default", text, re.MULTILINE) and not re.search(
                rf"^\s*#\s+{key}: .*#.*required", text, re.MULTILINE):
            problems.append(f"node_pools.pools.<name>.{key}: not documented")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("source", sorted(KUSTOMIZATIONS))
def test_lease_is_in_the_namespace_the_role_grants(source: str) -> None:
    objs = m.objects(source)
    namespace = m.deployment(objs)["metadata"]["namespace"]
    pools = m.config(objs).node_pools
    assert pools.lease_namespace == namespace
    [role] = [r for r in m.all_of(objs, "Role") if r["metadata"]["namespace"] == namespace]
    named = [rule.get("resourceNames") for rule in role["rules"] if "leases" in rule["resources"]]
    assert [pools.lease_name] in named, "the Role names the config's Lease"
    assert all(names in (None, [pools.lease_name]) for names in named), named


def test_overlay_acts_on_the_example_machinedeployment() -> None:
    pools = {p.name: p for p in m.config(m.objects("overlay")).node_pools.pools}
    md = m.one(m.example("machinedeployment.yaml"), "MachineDeployment")
    acting = [p for p in pools.values() if p.actuator == "machinedeployment"]
    assert [(p.namespace, p.target) for p in acting] == [
        (md["metadata"]["namespace"], md["metadata"]["name"])]


# --- RBAC ----------------------------------------------------------------------------------

# (where: "cluster", "scaler" or "pool" namespace; limited by resourceNames; group, resource, verb)
Row = tuple[str, bool, str, str, str]


def _readme_rbac() -> set[Row]:
    """The rules of the README's "Permissions (RBAC)" table, one per group/resource/verb."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    _, found, after = text.partition("### Permissions (RBAC)")
    assert found, "README.md has no '### Permissions (RBAC)' section"
    rows = []
    for line in after.strip().splitlines():
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    assert rows[0][1:] == ["granted by", "API group", "resource", "verbs"], rows[0]
    rules = set()
    for cells in rows[2:]:
        by = cells[1]
        where = ("cluster" if by.startswith("ClusterRole") else "scaler"
                 if "scaler's namespace" in by else "pool" if "pool's namespace" in by else by)
        group = cells[2].strip('"`')
        for resource in cells[3].split(","):
            for verb in cells[4].split(","):
                rules.add((where, "resourceNames" in by, group, resource.strip(), verb.strip()))
    assert rules, "the README's RBAC table has no rows"
    return rules


def _rbac_rows(objs: list[Obj], scaler_namespace: str) -> set[Row]:
    found = set()
    for role in [*m.all_of(objs, "ClusterRole"), *m.all_of(objs, "Role")]:
        namespace = role["metadata"].get("namespace")
        where = ("cluster" if role["kind"] == "ClusterRole" else "scaler"
                 if namespace == scaler_namespace else "pool")
        for rule in role["rules"]:
            assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule
            for part in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[part], f"wildcard in {role['metadata']['name']}: {rule}"
            named = bool(rule.get("resourceNames"))
            found |= {(where, named, g, r, v) for g in rule["apiGroups"]
                      for r in rule["resources"] for v in rule["verbs"]}
    return found


def test_rbac_is_exactly_the_readme_table() -> None:
    """The base grants the table's cluster-wide and scaler-namespace rows; the pool rows come
    with each acting pool (the overlay's MachineDeployment, the placeholder example)."""
    readme = _readme_rbac()
    base = _rbac_rows(m.objects("base"), BASE_NAMESPACE)
    overlay_objs = m.objects("overlay")
    overlay = _rbac_rows(overlay_objs, m.deployment(overlay_objs)["metadata"]["namespace"])
    examples = _rbac_rows(m.objects("examples"), BASE_NAMESPACE)
    assert base | overlay | examples == readme
    assert base == {row for row in readme if row[0] != "pool"}
    assert {row for row in overlay if row[0] != "pool"} == base
    assert {row[0] for row in examples} == {"pool"}


@pytest.mark.parametrize("source", SOURCES)
def test_bindings_grant_every_role_to_the_scaler_service_account(source: str) -> None:
    objs = m.objects(source)
    if source == "examples":  # the node pool Roles of the examples bind deploy/base's account
        subject = {"kind": "ServiceAccount", "name": m.SCALER, "namespace": BASE_NAMESPACE}
    else:
        account = m.one(objs, "ServiceAccount")
        subject = {"kind": "ServiceAccount", "name": account["metadata"]["name"],
                   "namespace": account["metadata"]["namespace"]}
        pod = m.deployment(objs)["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == account["metadata"]["name"]
    roles = sorted((o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
                   for o in [*m.all_of(objs, "ClusterRole"), *m.all_of(objs, "Role")])
    bound = []
    for binding in [*m.all_of(objs, "ClusterRoleBinding"), *m.all_of(objs, "RoleBinding")]:
        assert binding["subjects"] == [subject], binding["metadata"]
        # A RoleBinding binds a Role of its namespace, never a ClusterRole: that would grant
        # the ClusterRole's rules there, unseen by the checks on Roles.
        kind = "ClusterRole" if binding["kind"] == "ClusterRoleBinding" else "Role"
        ref = binding["roleRef"]
        assert (ref["apiGroup"], ref["kind"]) == ("rbac.authorization.k8s.io", kind), ref
        bound.append((kind, binding["metadata"].get("namespace"), ref["name"]))
    assert sorted(bound) == roles, "every Role bound once, to the scaler"


# --- the scaler's Deployment -------------------------------------------------------------------


def _image_uid() -> int:
    found = re.search(r"^USER (\d+)", (ROOT / "Dockerfile").read_text(encoding="utf-8"),
                      re.MULTILINE)
    assert found, "the Dockerfile names no numeric USER"
    return int(found.group(1))


def _base_images() -> list[str]:
    """The image of every FROM line that does not name an earlier stage."""
    stages: set[str] = set()
    images = []
    for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        words = line.split()
        if not words or words[0].upper() != "FROM":
            continue
        args = [w for w in words[1:] if not w.startswith("--")]  # e.g. --platform=...
        if args[0] not in stages:
            images.append(args[0])
        if len(args) == 3 and args[1].upper() == "AS":
            stages.add(args[2])
    return images


def test_dockerfile_pins_every_base_image_by_digest() -> None:
    """A tag moves under a rebuild; a digest is the same bytes until the pin is moved."""
    images = _base_images()
    assert images, "the Dockerfile has no FROM line"
    for image in images:
        assert re.fullmatch(r"[a-z0-9./_-]+(:[\w.-]+)?@sha256:[0-9a-f]{64}", image), \
            f"FROM {image}: pin the base image by digest (name:tag@sha256:...)"
    # The build stage installs into the runtime stage's interpreter: one base for both.
    assert len(set(images)) == 1, images


@pytest.mark.parametrize("source", sorted(KUSTOMIZATIONS))
def test_scaler_runs_unprivileged_read_only_non_root(source: str) -> None:
    pod = m.deployment(m.objects(source))["spec"]["template"]["spec"]
    container = _container(m.deployment(m.objects(source)))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == _image_uid()
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "add" not in security["capabilities"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "/tmp must be writable: an emptyDir"


@pytest.mark.parametrize("source", sorted(KUSTOMIZATIONS))
def test_probes_and_ports_are_the_ones_the_config_serves(source: str) -> None:
    objs = m.objects(source)
    container = _container(m.deployment(objs))
    server = m.config(objs).server
    assert _named_port(container, "grpc") == server.grpc_port
    assert _named_port(container, "http") == server.http_port
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        port = get["port"]
        assert (_named_port(container, port) if isinstance(port, str) else port) == \
            server.http_port, probe


@pytest.mark.parametrize("source", sorted(KUSTOMIZATIONS))
def test_scaler_serves_the_mounted_configmap(source: str) -> None:
    objs = m.objects(source)
    deployment = m.deployment(objs)
    container = _container(deployment)
    argv = [*container.get("command", [])[1:], *container["args"]]
    assert container.get("command", ["scaler"])[0] == "scaler"
    args = cli._parser().parse_args(argv)
    assert args.command == "serve"
    config_path = Path(args.config)
    assert config_path.name == CONFIG_KEY
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    volume = volumes[mounts[str(config_path.parent)]]
    configmap = m.one(objs, "ConfigMap")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert "items" not in volume["configMap"] and all(
        "subPath" not in m for m in container["volumeMounts"]), \
        "mount the whole ConfigMap: subPath mounts never see updates (no live tuning)"
    env = {e["name"]: e for e in container["env"]}
    field = env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.namespace"
    namespace = deployment["metadata"]["namespace"]
    resolved = env["SCALER_CONFIGMAP"]["value"].replace("$(POD_NAMESPACE)", namespace)
    assert resolved == f"{namespace}/{configmap['metadata']['name']}"


@pytest.mark.parametrize("source", sorted(KUSTOMIZATIONS))
def test_two_replicas_spread_and_one_always_up(source: str) -> None:
    objs = m.objects(source)
    deployment = m.deployment(objs)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["replicas"] >= 2
    assert _matches(deployment["spec"]["selector"]["matchLabels"], labels)
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    by_host = [c for c in spread if c["topologyKey"] == "kubernetes.io/hostname"]
    assert by_host and _matches(by_host[0]["labelSelector"]["matchLabels"], labels)
    pdb = m.one(objs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert _matches(pdb["spec"]["selector"]["matchLabels"], labels)


def test_service_and_servicemonitor_reach_the_scaler_ports() -> None:
    objs = m.objects("base")
    deployment = m.deployment(objs)
    container = _container(deployment)
    service = m.one(objs, "Service")
    assert _matches(service["spec"]["selector"],
                    deployment["spec"]["template"]["metadata"]["labels"])
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert set(ports) == {"grpc", "http"}
    for name, port in ports.items():
        assert port["port"] == _named_port(container, name)
        assert port["targetPort"] in (name, _named_port(container, name))
    monitor = m.one(objs, "ServiceMonitor")
    assert _matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    assert endpoint["honorLabels"] is True, "keep the workload's namespace label"


def _peer_admits(peer: Obj, namespace: str) -> bool:
    """Whether one `from` peer admits a pod of ``namespace`` (namespaces carry the label
    kubernetes.io/metadata.name). Only the namespaceSelector form is modelled."""
    assert set(peer) <= {"namespaceSelector", "ipBlock"}, f"peer not modelled here: {peer}"
    if "ipBlock" in peer:
        return False  # node or external addresses, not a pod's namespace
    selector = peer["namespaceSelector"]
    assert set(selector) == {"matchLabels"}, f"selector not modelled here: {selector}"
    return _matches(selector["matchLabels"], {"kubernetes.io/metadata.name": namespace})


def _policy_admits(policy: Obj, container: Obj, namespace: str, port: int) -> bool:
    """NetworkPolicy ingress semantics: a connection is allowed if any rule admits both its
    source (no `from`: every source) and its port (no `ports`: every port)."""
    for rule in policy["spec"].get("ingress") or []:
        peers, ports = rule.get("from") or [], rule.get("ports") or []
        numbers = {_named_port(container, p["port"]) if isinstance(p["port"], str) else p["port"]
                   for p in ports if p.get("protocol", "TCP") == "TCP"}
        if (not peers or any(_peer_admits(peer, namespace) for peer in peers)) and (
                not ports or port in numbers):
            return True
    return False


@pytest.mark.parametrize("source", sorted(KUSTOMIZATIONS))
def test_networkpolicy_admits_keda_and_prometheus_only(source: str) -> None:
    objs = m.objects(source)
    deployment = m.deployment(objs)
    container = _container(deployment)
    policy = m.one(objs, "NetworkPolicy")
    assert policy["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert _matches(policy["spec"]["podSelector"]["matchLabels"],
                    deployment["spec"]["template"]["metadata"]["labels"])
    assert policy["spec"]["policyTypes"] == ["Ingress"], "egress is left open on purpose"
    grpc, http = _named_port(container, "grpc"), _named_port(container, "http")
    admitted = {(namespace, port) for namespace in
                ("keda", "monitoring", "llm", deployment["metadata"]["namespace"], "default")
                for port in (grpc, http) if _policy_admits(policy, container, namespace, port)}
    # KEDA: gRPC triggers and the metrics-api JSON; Prometheus: /metrics. Probes come from the
    # node, which a NetworkPolicy always admits; nobody else reaches the scaler.
    assert admitted == {("keda", grpc), ("keda", http), ("monitoring", http)}


def test_alerts_select_jobs_the_monitors_produce() -> None:
    """Prometheus Operator names a ServiceMonitor's job after the Service, a PodMonitor's
    after its namespace/name; the alerts must select those."""
    objs = m.objects("base")
    namespace = m.deployment(objs)["metadata"]["namespace"]
    jobs = {m.one(objs, "Service")["metadata"]["name"]}
    jobs |= {f"{namespace}/{m['metadata']['name']}" for m in m.all_of(objs, "PodMonitor")}
    exprs = [str(rule.get("expr", "")) for group in m.one(objs, "PrometheusRule")["spec"]["groups"]
             for rule in group["rules"]]
    selected = {job for expr in exprs for job in re.findall(r'job="([^"]+)"', expr)}
    assert selected <= jobs


def test_podmonitor_scrapes_the_example_vllm_pods() -> None:
    monitor = m.one(m.objects("base"), "PodMonitor")
    vllm = m.one(m.example("scaledobject-vllm.yaml"), "Deployment")
    template = vllm["spec"]["template"]
    assert _matches(monitor["spec"]["selector"]["matchLabels"], template["metadata"]["labels"])
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    [container] = template["spec"]["containers"]
    assert _named_port(container, endpoint["port"]) == 8000


# --- the examples ------------------------------------------------------------------------------


def test_every_example_says_what_it_is_for_and_what_to_change() -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        header = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("#"):
                break
            header.append(line)
        assert len(header) >= 3, f"{path.name}: no comment block at the top"
        assert "change" in "\n".join(header).lower(), \
            f"{path.name}: the header says nothing to change"


def _scaled_objects() -> list[tuple[str, Obj]]:
    return [(file, obj) for file, objs in m.example_files().items() for obj in objs
            if obj["kind"] == "ScaledObject"]


def _behavior(scaled: Obj) -> HpaBehavior:
    advanced = scaled["spec"].get("advanced", {}).get("horizontalPodAutoscalerConfig", {})
    return behavior_from_spec(advanced.get("behavior", {}))


def test_every_scaledobject_lets_the_hpa_carry_the_answer_out_at_once_and_exactly() -> None:
    """No second stabilization window, and no 10% tolerance: the answer is a replica count
    the scaler has already stabilised; a plan of 21 over 20 running must not stay at 20."""
    for file, scaled in _scaled_objects():
        behavior = _behavior(scaled)
        assert behavior.tolerances == (0.0, 0.0), file
        assert (behavior.scale_up.stabilization_s, behavior.scale_down.stabilization_s) == (
            0.0, 0.0), file


def test_the_replay_emulates_the_shipped_scaledobjects_hpa() -> None:
    """``scaler replay``'s predictive policy reaches its Deployment through this HPA."""
    scaled = m.one(m.example("scaledobject-vllm.yaml"), "ScaledObject")
    assert _behavior(scaled) == SCALEDOBJECT_BEHAVIOR


def _scaler_triggers(scaled: Obj) -> list[Obj]:
    triggers = [t for t in scaled["spec"]["triggers"]
                if t["type"] in ("external", "external-push", "metrics-api")]
    assert triggers, f"ScaledObject {scaled['metadata']['name']} has no trigger of the scaler"
    return triggers


def _scaler_metadata(trigger: Obj) -> dict[str, str]:
    """The metadata the scaler parses: the gRPC trigger's, or the metrics-api URL's query."""
    if trigger["type"] != "metrics-api":
        return dict(trigger["metadata"])
    query = urllib.parse.urlsplit(trigger["metadata"]["url"]).query
    return dict(urllib.parse.parse_qsl(query, strict_parsing=True))


def test_example_scaledobjects_cover_every_trigger_and_kaito() -> None:
    found = {(file, t["type"]) for file, scaled in _scaled_objects()
             for t in _scaler_triggers(scaled)}
    assert ("scaledobject-vllm.yaml", "external") in found
    assert ("scaledobject-vllm-push.yaml", "external-push") in found
    assert ("scaledobject-metrics-api.yaml", "metrics-api") in found
    assert ("kaito-workspace.yaml", "external") in found


def test_trigger_metadata_passes_the_scaler_parser() -> None:
    tunings = {source: m.config(m.objects(source)).tuning for source in KUSTOMIZATIONS}
    problems = []
    for file, scaled in _scaled_objects():
        meta = scaled["metadata"]
        for trigger in _scaler_triggers(scaled):
            for source, tuning in tunings.items():
                merged = tuning.metadata_for(meta["namespace"], meta["name"],
                                             _scaler_metadata(trigger))
                try:
                    spec = parse_metadata(merged)
                except MetadataError as exc:
                    problems += [f"{file} (with the {source} config): {p}" for p in exc.problems]
                    continue
                if spec.bounds.max_replicas > scaled["spec"]["maxReplicaCount"]:
                    problems.append(f"{file}: maxReplicas above maxReplicaCount")
    assert not problems, "\n".join(problems)


def test_scaler_address_is_the_service_port_of_the_trigger() -> None:
    """gRPC triggers dial the Service's grpc port; a metrics-api URL is the Service's http port
    and the decision route of that very ScaledObject."""
    objs = m.objects("base")
    service = m.one(objs, "Service")
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    for file, scaled in _scaled_objects():
        for trigger in _scaler_triggers(scaled):
            if trigger["type"] == "metrics-api":
                url = urllib.parse.urlsplit(trigger["metadata"]["url"])
                address = url.netloc
                port = ports["http"]
                meta = scaled["metadata"]
                assert url.path == DECISION_ROUTE.format(namespace=meta["namespace"],
                                                         name=meta["name"]), file
            else:
                address, port = trigger["metadata"]["scalerAddress"], ports["grpc"]
            assert address in (f"{host}:{port}", f"{host}.cluster.local:{port}"), file


def test_node_pools_named_by_triggers_exist_in_the_overlay_config() -> None:
    pools = {p.name: p for p in m.config(m.objects("overlay")).node_pools.pools}
    named = {(_scaler_metadata(t)["nodePool"], scaled["metadata"]["namespace"])
             for _, scaled in _scaled_objects()
             for t in _scaler_triggers(scaled) if "nodePool" in _scaler_metadata(t)}
    assert named, "no example shows nodePool"
    for pool, namespace in named:
        assert pool in pools
        assert namespace in pools[pool].namespaces, f"{namespace} may not count toward {pool}"


def test_the_overlay_pool_asks_no_more_than_its_machinedeployment_may_have() -> None:
    md = m.one(m.example("machinedeployment.yaml"), "MachineDeployment")
    most = int(md["metadata"]["annotations"][
        "cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size"])
    acting = [p for p in m.config(m.objects("overlay")).node_pools.pools
              if p.actuator != "dry-run"]
    assert acting and all(p.max_nodes == most for p in acting)


def test_scale_targets_and_discovered_pods_exist_in_the_examples() -> None:
    everything = [obj for objs in m.example_files().values() for obj in objs]
    for file, scaled in _scaled_objects():
        ref = scaled["spec"]["scaleTargetRef"]
        target = m.one([o for o in everything
                       if o["metadata"].get("namespace") == scaled["metadata"]["namespace"]
                       and o["apiVersion"] == ref.get("apiVersion", "apps/v1")],
                      ref.get("kind", "Deployment"), ref["name"])
        for trigger in _scaler_triggers(scaled):
            metadata = _scaler_metadata(trigger)
            if target["kind"] == "Deployment":
                assert metadata.get("deployment") == target["metadata"]["name"], file
                [container] = target["spec"]["template"]["spec"]["containers"]
                ports = [p["containerPort"] for p in container["ports"]]
                assert int(metadata.get("metricsPort", "8000")) in ports, file
            else:
                assert "labelSelector" in metadata, f"{file}: pods of a {target['kind']}"


def test_hpa_behaviour_leaves_stabilisation_to_the_scaler() -> None:
    for file, scaled in _scaled_objects():
        behavior = scaled["spec"].get("advanced", {}).get(
            "horizontalPodAutoscalerConfig", {}).get("behavior")
        if behavior is None:
            continue
        for direction in ("scaleDown", "scaleUp"):
            assert behavior[direction]["stabilizationWindowSeconds"] == 0, (file, direction)
    [vllm] = [s for f, s in _scaled_objects() if f == "scaledobject-vllm.yaml"]
    assert "behavior" in vllm["spec"]["advanced"]["horizontalPodAutoscalerConfig"]
    for file, scaled in _scaled_objects():
        fallback = scaled["spec"]["fallback"]
        assert fallback["failureThreshold"] >= 1 and fallback["replicas"] >= 1, file


# KEDA's fallback (pkg/fallback/fallback.go, doFallback): the replica count it asks the HPA for
# once more than failureThreshold calls in a row failed, by `behavior` (KEDA 2.17+).
def _fallback_replicas(fallback: Obj, running: int) -> int:
    behavior, replicas = fallback.get("behavior", "static"), fallback["replicas"]
    counts = {"static": replicas, "currentReplicas": running,
              "currentReplicasIfHigher": max(running, replicas),
              "currentReplicasIfLower": min(running, replicas)}
    assert behavior in counts, f"fallback behavior {behavior!r} is not modelled here"
    return int(counts[behavior])


def test_fallback_never_lowers_a_running_fleet() -> None:
    """A scaler outage must not cut a busy fleet (static replicas: 4 took 12 replicas to 4)."""
    for file, scaled in _scaled_objects():
        spec = scaled["spec"]
        for running in range(spec.get("minReplicaCount", 0), spec["maxReplicaCount"] + 1):
            asked = _fallback_replicas(spec["fallback"], running)
            assert asked >= running, f"{file}: fallback takes {running} replicas to {asked}"


def test_fallback_of_a_workload_at_zero_keeps_the_running_count() -> None:
    """At zero, KEDA 2.19+ wakes the target to 1 on fallback; the fallback must not then ask
    for `replicas` GPU replicas of an idle model."""
    at_zero = [(file, s) for file, s in _scaled_objects() if s["spec"].get("minReplicaCount") == 0]
    assert at_zero, "no example scales to zero"
    for file, scaled in at_zero:
        fallback = scaled["spec"]["fallback"]
        assert fallback.get("behavior") == "currentReplicas", file
        assert [_fallback_replicas(fallback, n) for n in (0, 1, 5)] == [0, 1, 5], file
        # fallback.replicas 0 would let KEDA scale a failing, inactive workload to zero.
        assert fallback["replicas"] >= 1, file


def test_fallback_replicas_fit_the_scaledobject_bounds() -> None:
    for file, scaled in _scaled_objects():
        spec = scaled["spec"]
        assert spec.get("minReplicaCount", 0) <= spec["fallback"]["replicas"] \
            <= spec["maxReplicaCount"], file


def test_triggerauthentication_gives_keda_the_external_scaler_tls_parameters() -> None:
    objs = m.example("triggerauthentication-tls.yaml")
    auth = m.one(objs, "TriggerAuthentication")
    parameters = {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]}
    assert parameters == {"caCert", "tlsClientCert", "tlsClientKey"}
    [trigger] = _scaler_triggers(m.one(objs, "ScaledObject"))
    assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"],
                                            "kind": "TriggerAuthentication"}
    assert not parameters & set(trigger["metadata"]), "secrets belong in the authentication"


def test_metrics_api_example_authenticates_with_a_bearer_token() -> None:
    """KEDA's metrics-api trigger (pkg/scalers/metrics_api_scaler.go): authMode `bearer` sends
    the TriggerAuthentication's `token` parameter as `Authorization: Bearer`; the decision's
    desiredReplicas over targetValue 1 is the replica count."""
    objs = m.example("scaledobject-metrics-api.yaml")
    auth = m.one(objs, "TriggerAuthentication")
    assert [ref["parameter"] for ref in auth["spec"]["secretTargetRef"]] == ["token"]
    [trigger] = _scaler_triggers(m.one(objs, "ScaledObject"))
    assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"],
                                            "kind": "TriggerAuthentication"}
    metadata = trigger["metadata"]
    assert metadata["authMode"] == "bearer"
    assert (metadata.get("format", "json"), metadata["valueLocation"], metadata["targetValue"]) \
        == ("json", "desiredReplicas", "1")
    secrets = {"token", "bearerToken"}
    assert not secrets & (set(metadata) | set(_scaler_metadata(trigger))), \
        "the token belongs in the authentication, not the metadata or the URL"


def _commented_items(text: str, name: str) -> list[Obj]:
    """The list items named ``name`` that a manifest shows commented out."""
    lines = text.splitlines()
    items: list[Obj] = []
    for i, line in enumerate(lines):
        found = re.fullmatch(rf"(\s*)# - name: {re.escape(name)}", line)
        if found is None:
            continue
        prefix = found.group(1) + "# "
        block = [line[len(prefix):]]
        for later in lines[i + 1:]:
            if not later.startswith(prefix + "  "):
                break
            block.append(later[len(prefix):])
        items += yaml.safe_load("\n".join(block))
    return items


def test_commented_token_mount_matches_the_metrics_api_example() -> None:
    """The base Deployment's commented api-token volume, uncommented, mounts the Secret the
    metrics-api example creates where its config points, and the API server would take it."""
    header = (EXAMPLES / "scaledobject-metrics-api.yaml").read_text(encoding="utf-8")
    secret = re.search(r"-n llm-scaler create secret generic (\S+)", header)
    token_file = re.search(r"http_api_token_file: (\S+)", header)
    assert secret and token_file, "the example's header names the Secret and the token file"
    assert "http_api_token_file" in {f.name for f in dataclasses.fields(ServerSettings)}
    text = (m.KUSTOMIZATIONS["base"] / "deployment.yaml").read_text(encoding="utf-8")
    [mount, volume] = _commented_items(text, "api-token")
    assert volume["secret"]["secretName"] == secret.group(1)
    assert mount["readOnly"] is True
    assert str(Path(token_file.group(1)).parent) == mount["mountPath"]
    deployment = copy.deepcopy(m.deployment(m.objects("base")))
    pod = deployment["spec"]["template"]["spec"]
    pod["volumes"].append(volume)
    _container(deployment)["volumeMounts"].append(mount)
    kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_machinedeployment_has_the_autoscaler_bounds_the_actuator_reads() -> None:
    md = m.one(m.example("machinedeployment.yaml"), "MachineDeployment")
    annotations = md["metadata"]["annotations"]
    low, high = int(annotations[MIN_SIZE_ANNOTATION]), int(annotations[MAX_SIZE_ANNOTATION])
    assert 0 <= low <= md["spec"]["replicas"] <= high


def test_placeholder_pods_are_preemptible_and_trigger_node_autoscaling() -> None:
    objs = m.example("placeholder.yaml")
    priority = m.one(objs, "PriorityClass")
    # Below every real pod (0), not below cluster-autoscaler's expendable cutoff (-10).
    assert -10 <= priority["value"] < 0
    assert priority.get("preemptionPolicy", "PreemptLowerPriority") == "PreemptLowerPriority"
    assert priority.get("globalDefault", False) is False
    deployment = m.one(objs, "Deployment")
    assert deployment["spec"]["replicas"] == 0, "the scaler owns the count, from 0"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == priority["metadata"]["name"]
    for container in pod["containers"]:
        resources = container["resources"]
        assert int(resources["requests"]["nvidia.com/gpu"]) >= 1
        assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"]
    [pool] = m.placeholder_config().node_pools.pools
    assert pool.actuator == "placeholder" and "placeholder" in ACTUATORS
    assert (pool.namespace, pool.target) == (deployment["metadata"]["namespace"],
                                             deployment["metadata"]["name"])
    gpus = int(pod["containers"][0]["resources"]["requests"]["nvidia.com/gpu"])
    assert pool.gpus_per_node == gpus, "one placeholder pod holds one whole node"
