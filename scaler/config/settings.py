"""Service settings: one dataclass per concern, every field with unit, default and why.

The file form is YAML with one section per dataclass (``server``, ``scrape``, ``workloads``,
...); each field is declared once with ``scaler.schema.setting``, and ``scaler.config.load``
reads and validates a whole document against these declarations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from scaler import schema
from scaler.config.api_token import read_api_token
from scaler.config.node_pools import NodePoolSettings
from scaler.config.tenancy import TenancySettings
from scaler.config.tls import read_tls
from scaler.keda.metadata import metadata_keys
from scaler.schema import Problem, above, at_least, port, setting, show

# KEDA's ScaledObject pollingInterval when not set, seconds.
KEDA_DEFAULT_POLLING_S = 30.0


@dataclass(frozen=True)
class ServerSettings:
    host: str = setting(
        "0.0.0.0", doc="Address both servers listen on.")
    grpc_port: int = setting(
        9090, check=port, doc="KEDA external scaler gRPC port.")
    http_port: int = setting(
        8080, check=port, doc="HTTP port: /metrics, /healthz, /readyz and the metrics-api JSON.")
    grace_s: float = setting(
        5.0, check=at_least(0), doc="Seconds in-flight RPCs get to finish on shutdown.")
    tls_cert_file: str = setting(
        "", doc="PEM certificate (chain) the gRPC server presents to KEDA, with tls_key_file; its"
                " names must cover the host in the trigger's scalerAddress (e.g. "
                "llm-predictive-scaler.llm-scaler.svc). Empty = plaintext gRPC. Read at start: "
                "restart to rotate.")
    tls_key_file: str = setting(
        "", doc="Unencrypted PEM private key of tls_cert_file. Read at start, never logged.")
    tls_client_ca_file: str = setting(
        "", doc="PEM CA certificate(s) that signed KEDA's client certificate (the "
                "TriggerAuthentication's tlsClientCert). Set: gRPC requires and verifies a client"
                " certificate (mutual TLS). Needs tls_cert_file and tls_key_file. Read at start.")
    http_tls: bool = setting(
        False, doc="Serve HTTP as HTTPS with tls_cert_file and tls_key_file (no client "
                   "certificates asked): probes and scrapers then need scheme HTTPS.")
    http_api_token_file: str = setting(
        "", doc="File holding the bearer token (a mounted Secret; surrounding whitespace "
                "ignored) that callers of the metrics-api route must send as Authorization: "
                "Bearer <token>: KEDA's metrics-api trigger with authMode: bearer and the token "
                "from a TriggerAuthentication. Whoever may call that route sets a workload's "
                "metadata. Empty = the route is off (404); /metrics and the probes stay open. "
                "Read at start: restart to rotate.")
    front_process: bool = setting(
        True, doc="Answer KEDA's gRPC calls from a second process that holds only the latest "
                  "verdicts, pushed to it after every decision, so scraping and forecasting "
                  "never delay an answer (one more process, about 40 MiB; the HTTP port stays "
                  "with the scaling process). false: one process scrapes and answers on one "
                  "event loop, and calls wait behind page parsing (200 workloads of 8 pods and "
                  "2,000 calls/s took its whole core: p99 1.6-1.9 s against the front's 13 ms; "
                  "BENCHMARKS.md); for a handful of workloads, one process fewer.")
    grpc_max_message_bytes: int = setting(
        4 * 2**20, check=at_least(1024),
        doc="Largest gRPC message the server receives or sends, bytes; a larger call is refused"
            " by gRPC with RESOURCE_EXHAUSTED before it is read whole. Restart.")
    grpc_max_concurrent_streams: int = setting(
        1000, check=at_least(1),
        doc="Most calls in flight on one gRPC connection (HTTP/2 streams); further calls wait "
            "for one to end. KEDA holds one StreamIsActive per external-push trigger on one "
            "connection: keep it above their number. Restart.")
    grpc_keepalive_s: float = setting(
        30.0, check=above(0),
        doc="Seconds between HTTP/2 pings on each KEDA connection, idle or holding streams "
            "(KEDA's client sends none): a held StreamIsActive stays open through NATs and load "
            "balancers that drop idle connections, and a KEDA that vanished is noticed. Restart.")
    grpc_keepalive_timeout_s: float = setting(
        10.0, check=above(0),
        doc="Seconds a ping may go unanswered before the connection is closed and its streams "
            "end (KEDA reopens them). Restart.")

    @property
    def tls_mode(self) -> str:
        """How gRPC is served: plaintext, TLS, or mutual TLS (client certificates required)."""
        if not self.tls_cert_file:
            return "plaintext"
        return "mutual TLS" if self.tls_client_ca_file else "TLS"

    def validate(self) -> list[str]:
        """Problems between keys and in the files they name (read now, as at start)."""
        return read_tls(self, "server.")[1] + read_api_token(self.http_api_token_file,
                                                             "server.")[1]


@dataclass(frozen=True)
class ScrapeSettings:
    interval_s: float = setting(
        5.0, check=above(0), doc="Seconds between two scrapes of one workload's pods. KEDA polls "
                                 "every 15-30 s; scraping faster keeps every answer fresh without"
                                 " scraping inside an RPC.")
    timeout_s: float = setting(
        2.0, check=above(0), doc="Per-request timeout of one metrics page, seconds.")
    max_concurrency: int = setting(
        64, check=above(0), doc="Most metrics requests in flight at once, across all workloads.")
    stale_after_s: float = setting(
        15.0, check=above(0), doc="A pod whose last good page is older than this counts as "
                                  "missing; a workload with no pod fresher than this answers "
                                  "UNAVAILABLE so KEDA's fallback applies. Default: 3 scrape "
                                  "intervals.")
    rate_window_s: float = setting(
        60.0, check=above(0), doc="Window, seconds, over which counters become rates and "
                                  "histograms quantiles (as PromQL rate(x[60s])).")

    def validate(self) -> list[str]:
        """A good page is up to ``interval_s + timeout_s`` old when the next one arrives: a
        shorter ``stale_after_s`` makes healthy pods missing (at 30/10, always UNAVAILABLE)."""
        if self.stale_after_s > self.interval_s + self.timeout_s:
            return []
        return [f"scrape.stale_after_s: {show(self.stale_after_s)} must be greater than "
                f"scrape.interval_s + scrape.timeout_s ({show(self.interval_s)} + "
                f"{show(self.timeout_s)}): a page is that old when the next one arrives, so "
                "healthy pods would count as missing and workloads answer UNAVAILABLE"]


@dataclass(frozen=True)
class WorkloadSettings:
    idle_timeout_s: float = setting(
        600.0, check=above(0), doc="A workload KEDA has not asked about for this long is dropped "
                                   "and no longer scraped. Must exceed the ScaledObject "
                                   "pollingInterval (default 30 s).")
    max_workloads: int = setting(
        2000, check=at_least(1),
        doc="Most workloads registered at once; a call about a new one past it is refused with "
            "RESOURCE_EXHAUSTED (HTTP 429) and nothing is registered, until one is dropped. "
            "Hot.")
    max_endpoints: int = setting(
        512, check=at_least(1),
        doc="Most static `endpoints` plus `gpuEndpoints` one trigger may list; past it the call "
            "is refused with RESOURCE_EXHAUSTED (HTTP 413) and nothing is fetched. Hot.")


def _base_url(raw: Any) -> str:
    """Empty (off) or an http(s) URL with a host."""
    if not isinstance(raw, str):
        raise ValueError(raw)
    if raw:
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(raw)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    return raw


def _url_path(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.startswith("/") or any(c.isspace() for c in raw):
        raise ValueError(raw)
    return raw


@dataclass(frozen=True)
class PrometheusSettings:
    url: str = setting(
        "", parse=_base_url,
        accepted="an http(s) URL such as http://prometheus.monitoring:9090, or empty (off)",
        doc="Prometheus base URL (e.g. http://prometheus.monitoring:9090) to warm-start each "
                "workload's forecaster from its history on first contact, and to read pod metrics"
                " from for workloads with metricsSource prometheus; empty = off.")
    history_query: str = setting(
        "", doc="PromQL giving a workload's request rate (req/s), with {namespace} and "
                "{scaledobject} placeholders (filled in escaped, as inside a PromQL string), used "
                "when the trigger has no historyQuery; each point is read as the rate over the "
                "5 minutes before its timestamp, as rate(...[5m]) gives it. For vLLM"
                " pods named after their ScaledObject: "
                "sum(rate(vllm:request_success_total{namespace=\"{namespace}\",pod=~\"{scaledobject}-.*\"}[5m])).")
    history_s: float = setting(
        14 * 86400.0, check=above(0), doc="How much history to read, seconds (two weeks covers "
                                          "both seasons).")
    timeout_s: float = setting(
        10.0, check=above(0), doc="Timeout of one range query, seconds.")
    source_lookback_s: float = setting(
        60.0, check=above(0), doc="With metricsSource prometheus: how old a pod's newest sample "
                                  "may be and still count, seconds (at least twice Prometheus' "
                                  "scrape interval).")
    source_timeout_s: float = setting(
        3.0, check=above(0), doc="With metricsSource prometheus: timeout of one workload's query,"
                                 " seconds; past it the pods are scraped directly for that round.")
    pod_label: str = setting(
        "pod", doc="Label that names the pod in Prometheus' series.")


@dataclass(frozen=True)
class GpuSettings:
    selector: str = setting(
        "", doc="Label selector of the dcgm-exporter pods (e.g. app=nvidia-dcgm-exporter); they "
                "are found through the Kubernetes API and scraped once per interval for all "
                "workloads, matched to pods by their pod/namespace labels. Empty = off (a "
                "trigger's static gpuEndpoints still work).")
    namespace: str = setting(
        "gpu-operator", doc="Namespace of the dcgm-exporter pods.")
    port: int = setting(
        9400, check=port, doc="dcgm-exporter metrics port.")
    path: str = setting(
        "/metrics", parse=_url_path, accepted="a URL path starting with '/', e.g. /metrics",
        doc="dcgm-exporter metrics path.")


MetadataDefaults = Mapping[str, str]


@dataclass(frozen=True)
class TuningSettings:
    """Trigger-metadata defaults the platform team sets once, instead of in each ScaledObject.

    Any metadata key (see the README's reference) with a value in its accepted form.
    Precedence, most specific first: the ScaledObject's own trigger metadata, then
    ``workloads["namespace/name"]``, then ``namespaces["namespace"]``, then ``defaults``.
    """

    defaults: MetadataDefaults = field(default_factory=dict)
    namespaces: Mapping[str, MetadataDefaults] = field(default_factory=dict)
    workloads: Mapping[str, MetadataDefaults] = field(default_factory=dict)

    def metadata_for(self, namespace: str, name: str,
                     metadata: Mapping[str, str]) -> dict[str, str]:
        return {**self.defaults, **self.namespaces.get(namespace, {}),
                **self.workloads.get(f"{namespace}/{name}", {}), **metadata}

    @classmethod
    def from_document(cls, value: Any, path: str, problems: list[Problem]) -> TuningSettings:
        if not isinstance(value, Mapping):
            problems.append(_rule(f"{path.rstrip('.')}: must be a mapping of keys, "
                                  f"not {_kind(value)}"))
            return cls()
        for key in value:
            if key not in ("defaults", "namespaces", "workloads"):
                problems.append(_rule(f"{path}{key}: unknown key; known keys in 'tuning': "
                                      "defaults, namespaces, workloads"))
        defaults = _metadata_map(value.get("defaults"), f"{path}defaults.", problems)
        namespaces = _scoped(value.get("namespaces"), f"{path}namespaces.", problems)
        workloads = _scoped(value.get("workloads"), f"{path}workloads.", problems,
                            scope_form="namespace/name")
        return cls(defaults, namespaces, workloads)


def _scoped(value: Any, path: str, problems: list[Problem],
            scope_form: str | None = None) -> dict[str, MetadataDefaults]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(_rule(f"{path.rstrip('.')}: must be a mapping, not {_kind(value)}"))
        return {}
    scoped: dict[str, MetadataDefaults] = {}
    for scope, keys in value.items():
        if scope_form and str(scope).count("/") != 1:
            problems.append(_rule(f"{path}{scope}: must be written as {scope_form}"))
            continue
        scoped[str(scope)] = _metadata_map(keys, f"{path}{scope}.", problems)
    return scoped


def _metadata_map(value: Any, path: str, problems: list[Problem]) -> dict[str, str]:
    """Metadata keys with values checked by the same declarations the RPCs use."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(_rule(f"{path.rstrip('.')}: must be a mapping of metadata keys, "
                              f"not {_kind(value)}"))
        return {}
    known = {key.key: key for key in metadata_keys()}
    checked: dict[str, str] = {}
    for name, raw in value.items():
        key = known.get(str(name))
        text = str(raw).lower() if isinstance(raw, bool) else str(raw)
        if key is None:
            problems.append(_rule(f"{path}{name}: not a trigger metadata key; known keys: "
                                  + ", ".join(known)))
            continue
        try:
            schema.read(key, text, text=True)
        except ValueError:
            problems.append(_rule(f"{path}{name}: {raw!r} is not {key.accepted}"))
            continue
        checked[str(name)] = text
    return checked


@dataclass(frozen=True)
class ServiceConfig:
    server: ServerSettings = field(default_factory=ServerSettings)
    scrape: ScrapeSettings = field(default_factory=ScrapeSettings)
    workloads: WorkloadSettings = field(default_factory=WorkloadSettings)
    tuning: TuningSettings = field(default_factory=TuningSettings)
    prometheus: PrometheusSettings = field(default_factory=PrometheusSettings)
    tenancy: TenancySettings = field(default_factory=TenancySettings)
    node_pools: NodePoolSettings = field(default_factory=NodePoolSettings)
    gpu: GpuSettings = field(default_factory=GpuSettings)

    def validate(self) -> list[str]:
        """Rules between sections (each section's own rules ran when it was read)."""
        idle, interval = self.workloads.idle_timeout_s, self.scrape.interval_s
        floor = max(interval, KEDA_DEFAULT_POLLING_S)
        if idle > floor:
            return []
        return [f"workloads.idle_timeout_s: {show(idle)} must be greater than scrape.interval_s"
                f" ({show(interval)}) and KEDA's pollingInterval (default "
                f"{show(KEDA_DEFAULT_POLLING_S)} s): a workload is dropped between two polls "
                "and answers UNAVAILABLE again until it is scraped anew"]


def _rule(message: str) -> Problem:
    return Problem("rule", "", None, message)


def _kind(value: Any) -> str:
    return type(value).__name__
