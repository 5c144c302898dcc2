"""ScaledObject trigger metadata -> a typed, validated ``WorkloadSpec``.

KEDA passes the trigger's ``metadata`` map (all strings) as ``scalerMetadata``
on every RPC. As in KEDA's own scalers, each key is declared once (name,
default, parser, doc); parsing fills a frozen dataclass and collects every
problem, so one INVALID_ARGUMENT names all bad keys with the accepted form.
The table in ``METADATA_KEYS`` is also the README's reference.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, get_args
from urllib.parse import urlsplit

from adapters.formats.vllm import Server
from scaler.model.profile import PROFILES_DIR

SERVERS: tuple[str, ...] = get_args(Server)


@dataclass(frozen=True)
class Endpoint:
    """One pod's metrics URL; ``pod`` names it (for GPU metrics and logs)."""

    pod: str
    url: str


@dataclass(frozen=True)
class WorkloadSpec:
    endpoints: tuple[Endpoint, ...]
    gpu_endpoints: tuple[str, ...]
    server: Server
    model_name: str | None
    metric_name: str
    target_queue_per_replica: float
    target_kv_cache_usage: float
    target_running_per_replica: float
    target_ttft_s: float
    tolerance: float
    min_replicas: int
    max_replicas: int
    activation_threshold: float
    policy: str
    profile: str
    slo_ttft_s: float
    headroom: float
    pod_startup_s: float
    node_startup_s: float
    scale_down_window_s: float
    gpus_per_replica: int
    gpus_per_node: int
    spare_nodes: int
    min_nodes: int
    max_nodes: int
    history_query: str | None
    deployment: str | None
    stateful_set: str | None
    label_selector: str | None
    pod_namespace: str | None
    metrics_port: int
    metrics_path: str
    node_pool: str | None
    metrics_source: str = "pods"
    prometheus_selector: str | None = None


class MetadataError(ValueError):
    """Bad trigger metadata; each problem names the key, the value and the accepted form."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


Parser = Callable[[str], Any]


@dataclass(frozen=True)
class MetadataKey:
    name: str
    field: str
    default: str | None  # None = required
    parse: Parser
    accepted: str
    doc: str


def _float_in(low: float, high: float, *, low_open: bool = False) -> Parser:
    def parse(raw: str) -> float:
        value = float(raw)
        below = value <= low if low_open else value < low
        if not math.isfinite(value) or below or value > high:
            raise ValueError
        return value

    return parse


def _int_at_least(low: int) -> Parser:
    def parse(raw: str) -> int:
        value = int(raw)
        if value < low:
            raise ValueError
        return value

    return parse


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
    if not endpoints:
        raise ValueError
    if len({e.url for e in endpoints}) != len(endpoints):
        raise ValueError
    return tuple(endpoints)


def _optional_endpoints(raw: str) -> tuple[Endpoint, ...]:
    return _endpoints(raw) if raw else ()


def _pod_from_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def _urls(raw: str) -> tuple[str, ...]:
    return tuple(_url(item) for item in _items(raw))


def _items(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def _choice(options: tuple[str, ...]) -> Parser:
    def parse(raw: str) -> str:
        if raw not in options:
            raise ValueError
        return raw

    return parse


def _metric_name(raw: str) -> str:
    if not raw or len(raw) > 100 or not all(c.isalnum() or c in "-_." for c in raw):
        raise ValueError
    return raw


def _optional_text(raw: str) -> str | None:
    return raw or None


def _optional_name(raw: str) -> str | None:
    if raw and not all(c.isalnum() or c in "-." for c in raw):
        raise ValueError
    return raw or None


def _port_number(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= 65535:
        raise ValueError
    return value


def _path(raw: str) -> str:
    if not raw.startswith("/") or any(c.isspace() for c in raw):
        raise ValueError
    return raw


_PROFILE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


def _profile_name(raw: str) -> str:
    """A profile shipped in scaler/profiles: a plain name, never a path."""
    if not _PROFILE_NAME.match(raw) or ".." in raw:
        raise ValueError
    if not (PROFILES_DIR / f"{raw}.yaml").is_file():
        raise ValueError
    return raw


METADATA_KEYS: tuple[MetadataKey, ...] = (
    MetadataKey(
        "endpoints", "endpoints", "", _optional_endpoints,
        "comma-separated http(s) URLs, each optionally 'pod=URL', no duplicates",
        "The workload's pod metrics URLs (static discovery; also for bare metal outside "
        "Kubernetes). Each is one replica. Name a pod (`vllm-0=http://10.0.0.7:8000/metrics`) "
        "to match its GPUs in dcgm-exporter by `pod` label.",
    ),
    MetadataKey(
        "gpuEndpoints", "gpu_endpoints", "", _urls,
        "comma-separated http(s) URLs of dcgm-exporter pages",
        "dcgm-exporter pages to read GPU load from. GPUs whose `pod` label names one of the "
        "endpoints count for that pod; pages without pod labels (bare metal) count whole.",
    ),
    MetadataKey(
        "server", "server", "vllm", _choice(SERVERS), "one of: " + ", ".join(SERVERS),
        "Inference server whose metric names to read.",
    ),
    MetadataKey(
        "modelName", "model_name", "", _optional_text, "a model name as in the model_name label",
        "Count only series with this `model_name` label (default: all models on the pod).",
    ),
    MetadataKey(
        "metricName", "metric_name", "desired-replicas", _metric_name,
        "1-100 characters of letters, digits, '-', '_', '.'",
        "Metric name in GetMetricSpec. Give each trigger of this scaler in one ScaledObject "
        "its own name.",
    ),
    MetadataKey(
        "targetQueuePerReplica", "target_queue_per_replica", "5", _float_in(0, 1e6, low_open=True),
        "a number > 0, e.g. '5'",
        "Waiting requests per replica to aim for (llm-d's saturation point is 5). Reactive "
        "policy; a predictive plan drains queues itself (shown as a proposal).",
    ),
    MetadataKey(
        "targetKvCacheUsage", "target_kv_cache_usage", "0.8", _float_in(0, 1, low_open=True),
        "a fraction in (0, 1], e.g. '0.8'",
        "KV-cache use per replica to aim for, 0-1 (vLLM preempts requests near 1). Reactive "
        "policy; a predictive plan sizes for the KV cache itself (shown as a proposal).",
    ),
    MetadataKey(
        "targetRunningPerReplica", "target_running_per_replica", "0", _float_in(0, 1e6),
        "a number >= 0; 0 turns it off",
        "Running (batched) requests per replica to aim for; 0 = not used.",
    ),
    MetadataKey(
        "targetTtftSeconds", "target_ttft_s", "0", _float_in(0, 3600),
        "seconds >= 0, e.g. '2'; 0 turns it off",
        "Time-to-first-token SLO: when the p95 TTFT over the rate window exceeds it, scale up "
        "in proportion (never used to scale down); 0 = not used.",
    ),
    MetadataKey(
        "tolerance", "tolerance", "0.1", _float_in(0, 1),
        "a fraction in [0, 1], e.g. '0.1'",
        "No change while every signal is within this fraction of its target (HPA's 10%).",
    ),
    MetadataKey(
        "minReplicas", "min_replicas", "0", _int_at_least(0), "an integer >= 0",
        "Fewest replicas the scaler asks for while active.",
    ),
    MetadataKey(
        "maxReplicas", "max_replicas", "100", _int_at_least(1), "an integer >= 1",
        "Most replicas the scaler asks for (KEDA's maxReplicaCount still applies).",
    ),
    MetadataKey(
        "activationThreshold", "activation_threshold", "0", _float_in(0, 1e9),
        "a number >= 0, e.g. '0'",
        "IsActive is true when waiting + running requests exceed this.",
    ),
)

POLICIES = ("predictive", "reactive")
METRICS_SOURCES = ("pods", "prometheus")

METADATA_KEYS += (
    MetadataKey(
        "policy", "policy", "predictive", _choice(POLICIES), "one of: " + ", ".join(POLICIES),
        "`predictive`: the replicas meeting the TTFT SLO now (queues drained within a minute) "
        "and at the demand forecast one pod start-up ahead, raised by the TTFT and running "
        "signals when set; `reactive`: the HPA-style answer alone.",
    ),
    MetadataKey(
        "profile", "profile", "llama-8b-h100", _profile_name,
        "a profile name from scaler/profiles (without .yaml)",
        "Replica performance profile the capacity model starts from (corrected online).",
    ),
    MetadataKey(
        "sloTtftSeconds", "slo_ttft_s", "2", _float_in(0.01, 3600),
        "seconds > 0, e.g. '2'",
        "TTFT SLO (for 99% of requests) the predictive capacity model sizes for.",
    ),
    MetadataKey(
        "headroom", "headroom", "1.0", _float_in(0.5, 10), "a factor in [0.5, 10], e.g. '1.1'",
        "Multiplier on the forecast's 95% upper bound when sizing ahead.",
    ),
    MetadataKey(
        "podStartupSeconds", "pod_startup_s", "180", _float_in(0, 86400), "seconds >= 0",
        "Time from asking for a replica to it serving: how far ahead replicas are planned.",
    ),
    MetadataKey(
        "nodeStartupSeconds", "node_startup_s", "900", _float_in(0, 86400), "seconds >= 0",
        "Time from ordering a node to it being ready (bare metal: 10-30 min).",
    ),
    MetadataKey(
        "scaleDownWindowSeconds", "scale_down_window_s", "300", _float_in(0, 86400),
        "seconds >= 0",
        "The predictive plan scales down to the largest target of this window (never while "
        "replicas start); as the HPA's scale-down stabilization window.",
    ),
    MetadataKey(
        "gpusPerReplica", "gpus_per_replica", "1", _int_at_least(1), "an integer >= 1",
        "GPUs one replica uses (tensor parallel size), for the node plan.",
    ),
    MetadataKey(
        "gpusPerNode", "gpus_per_node", "8", _int_at_least(1), "an integer >= 1",
        "GPUs one node of the pool holds, for the node plan.",
    ),
    MetadataKey(
        "spareNodes", "spare_nodes", "0", _int_at_least(0), "an integer >= 0",
        "Nodes kept beyond the plan.",
    ),
    MetadataKey(
        "minNodes", "min_nodes", "0", _int_at_least(0), "an integer >= 0",
        "Fewest nodes the node plan asks for (the node pool's minimum).",
    ),
    MetadataKey(
        "maxNodes", "max_nodes", "10000", _int_at_least(1), "an integer >= 1",
        "Most nodes the node plan asks for (the node pool's maximum).",
    ),
    MetadataKey(
        "deployment", "deployment", "", _optional_name, "a Deployment name",
        "Find the workload's pods through the Kubernetes API: the Deployment's pods (its "
        "selector), instead of static `endpoints`.",
    ),
    MetadataKey(
        "statefulSet", "stateful_set", "", _optional_name, "a StatefulSet name",
        "As `deployment`, for a StatefulSet.",
    ),
    MetadataKey(
        "labelSelector", "label_selector", "", _optional_text, "a label selector, e.g. "
        "'app=llama'", "As `deployment`, for the pods a label selector matches.",
    ),
    MetadataKey(
        "podNamespace", "pod_namespace", "", _optional_name, "a namespace name",
        "Namespace of the pods to discover (default: the ScaledObject's).",
    ),
    MetadataKey(
        "metricsPort", "metrics_port", "8000", _port_number, "a TCP port 1-65535",
        "Port of the discovered pods' metrics (vLLM serves them on its API port, 8000).",
    ),
    MetadataKey(
        "metricsPath", "metrics_path", "/metrics", _path, "a URL path starting with '/'",
        "Path of the discovered pods' metrics.",
    ),
    MetadataKey(
        "nodePool", "node_pool", "", _optional_text, "a pool name from node_pools.pools",
        "The node pool whose capacity this workload's node plan counts toward.",
    ),
    MetadataKey(
        "metricsSource", "metrics_source", "pods", _choice(METRICS_SOURCES),
        "one of: " + ", ".join(METRICS_SOURCES),
        "`pods`: scrape each pod's metrics page; `prometheus`: read the pods' latest samples "
        "from Prometheus (`prometheus.url` in the config), falling back to the pods while "
        "Prometheus cannot be read.",
    ),
    MetadataKey(
        "prometheusSelector", "prometheus_selector", "", _optional_text,
        "PromQL label matchers, e.g. 'namespace=\"llm\",job=\"vllm\"'",
        "With `metricsSource: prometheus`: the series to read. Alone, it names the workload "
        "(its pods are the `pod` label values found; it is then never sent to zero); with "
        "`deployment`, `statefulSet`, "
        "`labelSelector` or `endpoints`, it narrows the default "
        "`namespace=\"<podNamespace>\",pod=~\"<the ready pods>\"`.",
    ),
    MetadataKey(
        "historyQuery", "history_query", "", _optional_text, "a PromQL expression",
        "The workload's request rate (req/s) in Prometheus, to warm-start its forecaster "
        "(needs prometheus.url in the config; default: the config's prometheus.history_query).",
    ),
)

_KEYS_BY_NAME = {key.name: key for key in METADATA_KEYS}
# Keys KEDA itself reads from the trigger metadata of an external scaler.
_KEDA_KEYS = frozenset(
    {"scalerAddress", "tlsCertFile", "caCert", "tlsClientCert", "tlsClientKey", "unsafeSsl",
     "enableTLS"}
)


def parse_metadata(metadata: Mapping[str, str]) -> WorkloadSpec:
    """Parse KEDA's scalerMetadata; raise MetadataError naming every bad or unknown key."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    for key in METADATA_KEYS:
        raw = metadata.get(key.name, key.default)
        if raw is None:
            problems.append(f"scalerMetadata key '{key.name}' is required: {key.accepted}")
            continue
        try:
            values[key.field] = key.parse(raw.strip())
        except ValueError:
            problems.append(
                f"scalerMetadata key '{key.name}' has value {raw!r}: expected {key.accepted}"
            )
    for name in metadata:
        if name not in _KEYS_BY_NAME and name not in _KEDA_KEYS:
            problems.append(
                f"scalerMetadata key '{name}' is not known; known keys: "
                + ", ".join(_KEYS_BY_NAME)
            )
    sources = [k for k, f in (("endpoints", "endpoints"), ("deployment", "deployment"),
                              ("statefulSet", "stateful_set"),
                              ("labelSelector", "label_selector")) if values.get(f)]
    from_prometheus = values.get("metrics_source") == "prometheus"
    if not problems and values.get("prometheus_selector") and not from_prometheus:
        problems.append("scalerMetadata key 'prometheusSelector' needs 'metricsSource: "
                        "prometheus' (it selects series in Prometheus, not pods)")
    selector_alone = from_prometheus and not sources and bool(values.get("prometheus_selector"))
    if not problems and not selector_alone and len(sources) != 1:
        problems.append(
            "scalerMetadata needs exactly one of 'endpoints' (static pod URLs), 'deployment', "
            "'statefulSet' or 'labelSelector' (pods found through the Kubernetes API), or "
            "'prometheusSelector' with 'metricsSource: prometheus'"
            + (f"; got {', '.join(sources)}" if sources else ""))
    if not problems and values["gpus_per_replica"] > values["gpus_per_node"]:
        problems.append(
            f"scalerMetadata key 'gpusPerReplica' ({values['gpus_per_replica']}) is greater "
            f"than 'gpusPerNode' ({values['gpus_per_node']})")
    if not problems and values["min_nodes"] > values["max_nodes"]:
        problems.append(
            f"scalerMetadata key 'minNodes' ({values['min_nodes']}) is greater than "
            f"'maxNodes' ({values['max_nodes']})")
    if not problems and values["min_replicas"] > values["max_replicas"]:
        problems.append(
            f"scalerMetadata key 'minReplicas' ({values['min_replicas']}) is greater than "
            f"'maxReplicas' ({values['max_replicas']})"
        )
    if problems:
        raise MetadataError(problems)
    return WorkloadSpec(**values)


def reference_table() -> str:
    """The metadata reference as a Markdown table (kept in the README)."""
    rows = ["| key | default | accepted | meaning |", "| --- | --- | --- | --- |"]
    for key in METADATA_KEYS:
        default = "required" if key.default is None else f"`{key.default}`" if key.default else ""
        rows.append(f"| `{key.name}` | {default} | {key.accepted} | {key.doc} |")
    return "\n".join(rows)
