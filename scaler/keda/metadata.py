"""ScaledObject trigger metadata -> a typed, validated ``WorkloadSpec``.

KEDA passes the trigger's ``metadata`` map (all strings) as ``scalerMetadata`` on every RPC.
As in KEDA's own scalers, each key is declared once, on its field (key, default, check, doc:
``scaler.schema``): here the keys that say where a workload's pods and metrics are, in
``scaler.model.specs`` the ones the model takes (reactive targets, replica bounds, node shape,
plan settings). Parsing collects every problem, so one INVALID_ARGUMENT names all bad keys
with the accepted form. ``reference_table`` renders the README's reference from the same
declarations.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from adapters.formats.promql import Matcher, parse_matchers, render
from adapters.formats.vllm import Server
from scaler.config.profiles import profile_names
from scaler.model.specs import (
    Endpoint,
    NodeShape,
    PlanSettings,
    ReactiveTargets,
    ReplicaBounds,
)
from scaler.schema import Declared, Problem, declared, read_fields, setting, validate

SERVERS: tuple[str, ...] = get_args(Server)
MetricsSource = Literal["pods", "prometheus"]
METRICS_SOURCES: tuple[str, ...] = get_args(MetricsSource)
# Keys KEDA itself reads from the trigger metadata of an external scaler (KEDA 2.20's
# pkg/scalers/external_scaler.go, order=triggerMetadata); it forwards them with the rest.
KEDA_KEYS = frozenset({"scalerAddress", "enableTLS", "unsafeSsl"})
# KEDA's TLS files, which it reads only from a TriggerAuthentication (order=authParams): in the
# metadata they do nothing, so a trigger carrying them would silently connect without them.
TLS_KEYS = frozenset({"caCert", "tlsClientCert", "tlsClientKey", "tlsCertFile"})
FROM_ENV = "FromEnv"


def _url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError
    parts.port  # noqa: B018 - raises ValueError on a bad port
    return raw


def _endpoints(raw: str) -> tuple[Endpoint, ...]:
    endpoints = []
    for item in _items(raw):
        pod, sep, url = item.partition("=")
        if not sep or not url.strip().startswith(("http://", "https://")):
            pod, url = "", item  # a bare URL (it may have '=' in its query string)
        url = _url(url.strip())
        endpoints.append(Endpoint(pod=pod.strip() or _pod_from_url(url), url=url))
    if len({e.url for e in endpoints}) != len(endpoints):
        raise ValueError
    return tuple(endpoints)


def _pod_from_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def _urls(raw: str) -> tuple[str, ...]:
    return tuple(_url(item) for item in _items(raw))


def _items(raw: str) -> list[str]:
    return [item.strip() for item in raw.strip().split(",") if item.strip()]


def _metric_name(raw: str) -> str:
    raw = raw.strip()
    if not raw or len(raw) > 100 or not all(c.isalnum() or c in "-_." for c in raw):
        raise ValueError
    return raw


def _optional_name(raw: str) -> str | None:
    raw = raw.strip()
    if raw and not all(c.isalnum() or c in "-." for c in raw):
        raise ValueError
    return raw or None


def _selector(raw: str) -> str | None:
    """PromQL label matchers, written back escaped: only matchers, nothing around them."""
    return render(parse_matchers(raw)) or None


def _port_number(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= 65535:
        raise ValueError
    return value


def _path(raw: str) -> str:
    raw = raw.strip()
    if not raw.startswith("/") or any(c.isspace() for c in raw):
        raise ValueError
    return raw


@dataclass(frozen=True)
class WorkloadSpec:
    """One trigger's settings: where its pods are, and the model's four specs."""

    endpoints: tuple[Endpoint, ...] = setting(
        (), parse=_endpoints,
        accepted="comma-separated http(s) URLs, each optionally 'pod=URL', no duplicates",
        doc="The workload's pod metrics URLs (static discovery; also for bare metal outside "
            "Kubernetes). Each is one replica. Name a pod (`vllm-0=http://10.0.0.7:8000/metrics`) "
            "to match its GPUs in dcgm-exporter by `pod` label.")
    gpu_endpoints: tuple[str, ...] = setting(
        (), key="gpuEndpoints", parse=_urls,
        accepted="comma-separated http(s) URLs of dcgm-exporter pages",
        doc="dcgm-exporter pages to read GPU load from. GPUs whose `pod` label names one of the "
            "endpoints count for that pod; pages without pod labels (bare metal) count whole.")
    server: Server = setting(
        "vllm", accepted="one of: " + ", ".join(SERVERS),
        doc="Inference server whose metric names to read.")
    model_name: str | None = setting(
        None, key="modelName", accepted="a model name as in the model_name label",
        doc="Count only series with this `model_name` label (default: all models on the pod).")
    metric_name: str = setting(
        "desired-replicas", key="metricName", parse=_metric_name,
        accepted="1-100 characters of letters, digits, '-', '_', '.'",
        doc="Metric name in GetMetricSpec. Give each trigger of this scaler in one ScaledObject "
            "its own name.")
    deployment: str | None = setting(
        None, parse=_optional_name, accepted="a Deployment name",
        doc="Find the workload's pods through the Kubernetes API: the Deployment's pods (its "
            "selector), instead of static `endpoints`.")
    stateful_set: str | None = setting(
        None, key="statefulSet", parse=_optional_name, accepted="a StatefulSet name",
        doc="As `deployment`, for a StatefulSet.")
    label_selector: str | None = setting(
        None, key="labelSelector", accepted="a label selector, e.g. 'app=llama'",
        doc="As `deployment`, for the pods a label selector matches.")
    pod_namespace: str | None = setting(
        None, key="podNamespace", parse=_optional_name, accepted="a namespace name",
        doc="Namespace of the pods to discover (default: the ScaledObject's).")
    metrics_port: int = setting(
        8000, key="metricsPort", parse=_port_number, accepted="a TCP port 1-65535",
        doc="Port of the discovered pods' metrics (vLLM serves them on its API port, 8000).")
    metrics_path: str = setting(
        "/metrics", key="metricsPath", parse=_path, accepted="a URL path starting with '/'",
        doc="Path of the discovered pods' metrics.")
    node_pool: str | None = setting(
        None, key="nodePool", accepted="a pool name from node_pools.pools",
        doc="The node pool whose capacity this workload's node plan counts toward (the pool "
            "must list the ScaledObject's namespace in its namespaces).")
    metrics_source: MetricsSource = setting(
        "pods", key="metricsSource", accepted="one of: " + ", ".join(METRICS_SOURCES),
        doc="`pods`: scrape each pod's metrics page; `prometheus`: read the pods' latest samples "
            "from Prometheus (`prometheus.url` in the config), falling back to the pods while "
            "Prometheus cannot be read.")
    prometheus_selector: str | None = setting(
        None, key="prometheusSelector", parse=_selector,
        accepted="PromQL label matchers (label, =, !=, =~ or !~, a quoted value; comma-"
                 "separated), e.g. 'job=\"vllm\",model_name=\"llama\"'",
        doc="With `metricsSource: prometheus`: the series to read. Alone, it names the workload "
            "(its pods are the `pod` label values found; it is then never sent to zero); with "
            "`deployment`, `statefulSet`, `labelSelector` or `endpoints`, it narrows the default "
            "`namespace=\"<podNamespace>\",pod=~\"<the ready pods>\"`. Unless "
            "tenancy.cross_namespace, `namespace=\"<the ScaledObject's>\"` is added and a "
            "matcher naming the namespace otherwise is refused.")
    history_query: str | None = setting(
        None, key="historyQuery", accepted="a PromQL expression",
        doc="The workload's request rate (req/s) in Prometheus, to warm-start its forecaster "
            "(needs prometheus.url in the config; default: the config's "
            "prometheus.history_query). The operator's key: set in tuning, not in a trigger, "
            "unless tenancy.cross_namespace.")
    targets: ReactiveTargets = dataclasses.field(default_factory=ReactiveTargets)
    bounds: ReplicaBounds = dataclasses.field(default_factory=ReplicaBounds)
    plan: PlanSettings = dataclasses.field(default_factory=PlanSettings)
    nodes: NodeShape = dataclasses.field(default_factory=NodeShape)

    @functools.cached_property
    def hosts(self) -> tuple[tuple[str, str], ...]:
        """(key, host) of each static URL, every host once per key: what tenancy checks."""
        found = dict.fromkeys(
            [("endpoints", urlsplit(e.url).hostname or "") for e in self.endpoints]
            + [("gpuEndpoints", urlsplit(url).hostname or "") for url in self.gpu_endpoints])
        return tuple(found)

    @functools.cached_property
    def selector_matchers(self) -> tuple[Matcher, ...]:
        return parse_matchers(self.prometheus_selector or "")

    def validate(self) -> list[str]:
        sources = [key for key, value in (
            ("endpoints", self.endpoints), ("deployment", self.deployment),
            ("statefulSet", self.stateful_set), ("labelSelector", self.label_selector)) if value]
        from_prometheus = self.metrics_source == "prometheus"
        if self.prometheus_selector and not from_prometheus:
            return ["'prometheusSelector' needs 'metricsSource: prometheus' (it selects series "
                    "in Prometheus, not pods)"]
        selector_alone = from_prometheus and not sources and bool(self.prometheus_selector)
        if not selector_alone and len(sources) != 1:
            return ["needs exactly one of 'endpoints' (static pod URLs), 'deployment', "
                    "'statefulSet' or 'labelSelector' (pods found through the Kubernetes API), "
                    "or 'prometheusSelector' with 'metricsSource: prometheus'"
                    + (f"; got {', '.join(sources)}" if sources else "")]
        return []


_PARTS = (("targets", ReactiveTargets), ("bounds", ReplicaBounds), ("plan", PlanSettings),
          ("nodes", NodeShape))


def metadata_keys() -> tuple[Declared, ...]:
    """Every trigger metadata key, in reference order."""
    return declared(WorkloadSpec) + tuple(f for _, cls in _PARTS for f in declared(cls))


def changed_keys(old: WorkloadSpec, new: WorkloadSpec) -> list[str]:
    """The metadata keys whose values differ between two specs: names only, for a log line
    (values may be URLs with credentials in them)."""
    pairs = [(old, new, WorkloadSpec)] + [(getattr(old, name), getattr(new, name), cls)
                                         for name, cls in _PARTS]
    return [f.key for a, b, cls in pairs for f in declared(cls)
            if getattr(a, f.name) != getattr(b, f.name)]


class MetadataError(ValueError):
    """Bad trigger metadata; each problem names the key, the value and the accepted form."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def parse_metadata(metadata: Mapping[str, str]) -> WorkloadSpec:
    """Parse KEDA's scalerMetadata; raise MetadataError naming every bad or unknown key."""
    keys = metadata_keys()
    known = {f.key for f in keys}
    metadata, renamed, problems = from_env(metadata, known)
    problems += [Problem("unknown", name) for name in metadata
                 if name not in known and name not in KEDA_KEYS]
    values: dict[str, Any] = {}
    for name, cls in ((None, WorkloadSpec), *_PARTS):
        kwargs, found = read_fields(declared(cls), metadata, text=True)
        problems += found
        if name is None:
            values.update(kwargs)
        else:
            values[name] = cls(**kwargs)
    problems += _profile_problems(metadata, problems)
    if not problems:
        spec = WorkloadSpec(**values)
        problems = [Problem("rule", "", None, message)
                    for part in (spec, spec.targets, spec.bounds, spec.plan, spec.nodes)
                    for message in validate(part)]
    if problems:
        raise MetadataError([_worded(p, sorted(known), renamed) for p in problems])
    return spec


def from_env(metadata: Mapping[str, str], known: set[str]
             ) -> tuple[dict[str, str], dict[str, str], list[Problem]]:
    """KEDA's ``xFromEnv`` keys read as ``x``; also which keys were renamed, and conflicts.

    For an external scaler KEDA (2.20, ``parseExternalScalerMetadata``) forwards ``xFromEnv``
    under that name with the value of the scale target's environment variable it names, and
    leaves the key out when the variable is unset or empty. Its own scalers read such a key as
    ``x``; so does this one. TLS keys are refused here, before anything else is said of them.
    """
    plain: dict[str, str] = {}
    renamed: dict[str, str] = {}
    problems = []
    for name, value in metadata.items():
        base = name.removesuffix(FROM_ENV)
        if name in TLS_KEYS:
            problems.append(Problem("rule", name, None, _tls_problem(name)))
        elif base == name or base not in known:
            plain[name] = value
        elif base in metadata:
            problems.append(Problem("rule", name, None, (
                f"'{name}' repeats '{base}': give one (KEDA sets '{name}' to the value of the "
                "scale target's environment variable it names)")))
        else:
            plain[base], renamed[base] = value, name
    return plain, renamed, problems


def over_tuning(tuning: Mapping[str, str], trigger: Mapping[str, str]) -> dict[str, str]:
    """The trigger's keys over the operator's tuning, a trigger's ``xFromEnv`` replacing ``x``
    as ``x`` would (both would otherwise be given, and refused as repeating each other)."""
    return {**{key: value for key, value in tuning.items() if key + FROM_ENV not in trigger},
            **trigger}


def _tls_problem(name: str) -> str:
    removed = " (it read it from metadata up to 2.16 only)" if name == "tlsCertFile" else ""
    return (f"'{name}' is ignored by KEDA in a trigger's metadata{removed}: give caCert, "
            "tlsClientCert and tlsClientKey in a TriggerAuthentication (the trigger's "
            "authenticationRef), where KEDA reads its TLS files from")


def _profile_problems(metadata: Mapping[str, str], found: list[Problem]) -> list[Problem]:
    """A well-formed profile name must also be a shipped profile."""
    raw = metadata.get("profile")
    if raw is None or raw.strip() in profile_names() or any(p.key == "profile" for p in found):
        return []
    (field,) = [f for f in declared(PlanSettings) if f.key == "profile"]
    return [Problem("type", "profile", raw, field.accepted, field)]


def _worded(problem: Problem, known: list[str], renamed: Mapping[str, str]) -> str:
    key = f"'{problem.key}'"
    if problem.key in renamed:  # its value is the environment variable's that KEDA resolved
        key = f"'{renamed[problem.key]}' (read as '{problem.key}')"
    if problem.kind == "unknown":
        return (f"scalerMetadata key {key} is not known; known keys: " + ", ".join(known))
    if problem.kind == "required":
        return f"scalerMetadata key {key} is required: {problem.detail}"
    if problem.kind == "rule":
        return f"scalerMetadata {problem.detail}" if problem.detail.startswith("needs") \
            else f"scalerMetadata key {problem.detail}"
    accepted = problem.field.accepted if problem.field else problem.detail
    return f"scalerMetadata key {key} has value {problem.raw!r}: expected {accepted}"


def reference_table() -> str:
    """The metadata reference as a Markdown table (kept in the README)."""
    rows = ["| key | default | accepted | meaning |", "| --- | --- | --- | --- |"]
    for f in metadata_keys():
        default = f.shown_default
        rows.append(f"| `{f.key}` | {f'`{default}`' if default else ''} | {f.accepted} | "
                    f"{f.setting.doc} |")
    return "\n".join(rows)
