"""Service settings: one dataclass per concern, every field with unit, default and why.

The file form is YAML with one section per dataclass (``server``, ``scrape``,
``workloads``). Loading validates the whole document and reports *every* bad
key at once with its dotted path, so a user fixes a ConfigMap in one go::

    scrape.interval_s: -1 is out of range: must be > 0 (seconds between scrapes)
    scrape.intreval_s: unknown key; known keys in 'scrape': interval_s, timeout_s, ...

Keys that only make sense together (``server.tls_*``) are checked together once each is
valid alone, and the files they name are read and loaded as at start, so a missing Secret
or a key of another certificate fails ``scaler validate-config``, not the next restart.
A config that fails validation is never partly applied.
"""

from __future__ import annotations

import dataclasses
import math
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scaler import schema
from scaler.service.node_pools import NodePoolSettings

Check = Callable[[Any], str | None]


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be > 0"


def _non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be >= 0"


def _port(value: Any) -> str | None:
    return None if 0 <= value <= 65535 else "must be a TCP port, 0-65535 (0 = pick a free one)"


def _setting(default: Any, doc: str, check: Check | None = None) -> Any:
    return field(default=default, metadata={"doc": doc, "check": check})


@dataclass(frozen=True)
class ServerSettings:
    host: str = _setting("0.0.0.0", "Address both servers listen on.")
    grpc_port: int = _setting(9090, "KEDA external scaler gRPC port.", _port)
    http_port: int = _setting(
        8080, "HTTP port: /metrics, /healthz, /readyz and the metrics-api JSON.", _port
    )
    grace_s: float = _setting(
        5.0, "Seconds in-flight RPCs get to finish on shutdown.", _non_negative
    )
    tls_cert_file: str = _setting(
        "", "PEM certificate (chain) the gRPC server presents to KEDA, with tls_key_file; its "
        "names must cover the host in the trigger's scalerAddress (e.g. "
        "llm-predictive-scaler.llm-scaler.svc). Empty = plaintext gRPC. Read at start: "
        "restart to rotate.")
    tls_key_file: str = _setting(
        "", "Unencrypted PEM private key of tls_cert_file. Read at start, never logged.")
    tls_client_ca_file: str = _setting(
        "", "PEM CA certificate(s) that signed KEDA's client certificate (the "
        "TriggerAuthentication's tlsClientCert). Set: gRPC requires and verifies a client "
        "certificate (mutual TLS). Needs tls_cert_file and tls_key_file. Read at start.")
    http_tls: bool = _setting(
        False, "Serve HTTP as HTTPS with tls_cert_file and tls_key_file (no client "
        "certificates asked): probes and scrapers then need scheme HTTPS.")
    front_process: bool = _setting(
        False, "Answer KEDA's gRPC calls from a second process that holds only the latest "
        "verdicts, pushed to it after every decision, so scraping and forecasting never delay "
        "an answer. Worth it from a few hundred workloads or many calls a second (uses one "
        "more process, about 40 MiB); the HTTP port stays with the scaling process.")

    @property
    def tls_mode(self) -> str:
        """How gRPC is served: plaintext, TLS, or mutual TLS (client certificates required)."""
        if not self.tls_cert_file:
            return "plaintext"
        return "mutual TLS" if self.tls_client_ca_file else "TLS"

    def cross_check(self, path: str) -> list[str]:
        """Problems between keys and in the files they name (read now, as at start)."""
        return _read_tls(self, path)[1]


@dataclass(frozen=True)
class TlsMaterial:
    """The PEM bytes the TLS settings name, read once at start (so: restart to rotate)."""

    cert_chain: bytes
    private_key: bytes = field(repr=False)  # no repr: a logged object never shows the key
    client_ca: bytes | None = None


_CERT_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----")
_KEY_PEM = re.compile(rb"-----BEGIN (?:RSA |EC |ENCRYPTED )?PRIVATE KEY-----")
_ENCRYPTED_KEY = re.compile(rb"-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED")


def load_tls(server: ServerSettings) -> TlsMaterial | None:
    """The TLS files' contents, or None for plaintext; ConfigError naming each bad key.

    Called at start, when the files are read for serving; a config loaded from a file
    was checked the same way already, so this fails only if the files changed since.
    """
    material, problems = _read_tls(server, "server.")
    if problems:
        raise ConfigError("server TLS settings", problems)
    return material


def _read_tls(server: ServerSettings, path: str) -> tuple[TlsMaterial | None, list[str]]:
    problems = _tls_pairing(server, path)
    if problems or not server.tls_cert_file:
        return None, problems
    cert = _read_pem(f"{path}tls_cert_file", server.tls_cert_file, _CERT_PEM,
                     "certificate", problems)
    key = _read_pem(f"{path}tls_key_file", server.tls_key_file, _KEY_PEM,
                    "private key", problems)
    client_ca = None
    if server.tls_client_ca_file:
        client_ca = _read_pem(f"{path}tls_client_ca_file", server.tls_client_ca_file,
                              _CERT_PEM, "CA certificate", problems)
    if key is not None and _ENCRYPTED_KEY.search(key):
        problems.append(f"{path}tls_key_file: {server.tls_key_file} is an encrypted private "
                        "key, which gRPC cannot use: store it decrypted in the Secret "
                        "(openssl pkey -in KEY -out PLAIN_KEY)")
    if cert is None or key is None or problems:
        return None, problems
    problems += _openssl_check(server, path)
    if problems:
        return None, problems
    return TlsMaterial(cert, key, client_ca), []


def _tls_pairing(server: ServerSettings, path: str) -> list[str]:
    """Keys that only make sense together: certificate and key, and what needs both."""
    cert, key = f"{path}tls_cert_file", f"{path}tls_key_file"
    if server.tls_cert_file and not server.tls_key_file:
        return [f"{key}: required with {cert} (the path of that certificate's PEM private key)"]
    if server.tls_key_file and not server.tls_cert_file:
        return [f"{cert}: required with {key} (the path of the PEM certificate of that key)"]
    problems = []
    if not server.tls_cert_file and server.tls_client_ca_file:
        problems.append(f"{path}tls_client_ca_file: needs {cert} and {key} (mutual TLS is "
                        "TLS that also checks KEDA's certificate): set both or remove it")
    if not server.tls_cert_file and server.http_tls:
        problems.append(f"{path}http_tls: needs {cert} and {key} (HTTPS serves that "
                        "certificate): set both or set http_tls: false")
    return problems


def _read_pem(key: str, file: str, marker: re.Pattern[bytes], what: str,
              problems: list[str]) -> bytes | None:
    """The file's bytes if it reads and holds a PEM block of the kind expected.

    Messages name the key and the path, never the contents.
    """
    try:
        data = Path(file).read_bytes()
    except OSError as exc:
        problems.append(f"{key}: cannot read {file}: {exc.strerror or exc} (mount the Secret "
                        "there or correct the path)")
        return None
    if not marker.search(data):
        problems.append(f"{key}: {file} is not a PEM {what} (no '-----BEGIN ...' block of "
                        "that kind): give the PEM file")
        return None
    return data


def _openssl_check(server: ServerSettings, path: str) -> list[str]:
    """Load the files as OpenSSL will when serving: the key must belong to the certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # A password (never used for an unencrypted key) so OpenSSL never prompts on a tty.
        context.load_cert_chain(server.tls_cert_file, server.tls_key_file, password=b"")
    except (ssl.SSLError, OSError) as exc:
        if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
            return [f"{path}tls_key_file: {server.tls_key_file} is not the private key of "
                    f"{server.tls_cert_file} ({path}tls_cert_file): give the key that "
                    "certificate was issued for"]
        return [f"{path}tls_cert_file: {server.tls_cert_file} with the key in "
                f"{server.tls_key_file} does not load ({_ssl_reason(exc)}): check both "
                "are PEM, the certificate first in its file"]
    if server.tls_client_ca_file:
        try:
            context.load_verify_locations(cafile=server.tls_client_ca_file)
        except (ssl.SSLError, OSError) as exc:
            return [f"{path}tls_client_ca_file: {server.tls_client_ca_file} does not load as "
                    f"PEM CA certificates ({_ssl_reason(exc)})"]
    return []


def _ssl_reason(exc: Exception) -> str:
    return str(getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc)


@dataclass(frozen=True)
class ScrapeSettings:
    interval_s: float = _setting(
        5.0,
        "Seconds between two scrapes of one workload's pods. KEDA polls every 15-30 s; "
        "scraping faster keeps every answer fresh without scraping inside an RPC.",
        _positive,
    )
    timeout_s: float = _setting(
        2.0, "Per-request timeout of one metrics page, seconds.", _positive
    )
    max_concurrency: int = _setting(
        64, "Most metrics requests in flight at once, across all workloads.", _positive
    )
    stale_after_s: float = _setting(
        15.0,
        "A pod whose last good page is older than this counts as missing; a workload with "
        "no pod fresher than this answers UNAVAILABLE so KEDA's fallback applies. "
        "Default: 3 scrape intervals.",
        _positive,
    )
    rate_window_s: float = _setting(
        60.0,
        "Window, seconds, over which counters become rates and histograms quantiles "
        "(as PromQL rate(x[60s])).",
        _positive,
    )


@dataclass(frozen=True)
class WorkloadSettings:
    idle_timeout_s: float = _setting(
        600.0,
        "A workload KEDA has not asked about for this long is dropped and no longer scraped. "
        "Must exceed the ScaledObject pollingInterval (default 30 s).",
        _positive,
    )


@dataclass(frozen=True)
class PrometheusSettings:
    url: str = _setting(
        "", "Prometheus base URL (e.g. http://prometheus.monitoring:9090) to warm-start each "
        "workload's forecaster from its history on first contact, and to read pod metrics "
        "from for workloads with metricsSource prometheus; empty = off.")
    history_query: str = _setting(
        "",
        "PromQL giving a workload's request rate (req/s), with {namespace} and {scaledobject} "
        "placeholders, used when the trigger has no historyQuery. For vLLM pods named after "
        "their ScaledObject: sum(rate(vllm:request_success_total{namespace=\"{namespace}\","
        "pod=~\"{scaledobject}-.*\"}[5m])).")
    history_s: float = _setting(
        14 * 86400.0, "How much history to read, seconds (two weeks covers both seasons).",
        _positive)
    timeout_s: float = _setting(10.0, "Timeout of one range query, seconds.", _positive)
    source_lookback_s: float = _setting(
        60.0, "With metricsSource prometheus: how old a pod's newest sample may be and still "
        "count, seconds (at least twice Prometheus' scrape interval).", _positive)
    source_timeout_s: float = _setting(
        3.0, "With metricsSource prometheus: timeout of one workload's query, seconds; past "
        "it the pods are scraped directly for that round.", _positive)
    pod_label: str = _setting("pod", "Label that names the pod in Prometheus' series.")


@dataclass(frozen=True)
class GpuSettings:
    selector: str = _setting(
        "", "Label selector of the dcgm-exporter pods (e.g. app=nvidia-dcgm-exporter); they "
        "are found through the Kubernetes API and scraped once per interval for all "
        "workloads, matched to pods by their pod/namespace labels. Empty = off (a trigger's "
        "static gpuEndpoints still work).")
    namespace: str = _setting("gpu-operator", "Namespace of the dcgm-exporter pods.")
    port: int = _setting(9400, "dcgm-exporter metrics port.", _port)
    path: str = _setting("/metrics", "dcgm-exporter metrics path.")


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
    def from_document(cls, value: Any, path: str, problems: list[str]) -> TuningSettings:
        if not isinstance(value, Mapping):
            problems.append(f"{path.rstrip('.')}: must be a mapping of keys, not {_kind(value)}")
            return cls()
        for key in value:
            if key not in ("defaults", "namespaces", "workloads"):
                problems.append(f"{path}{key}: unknown key; known keys in 'tuning': defaults, "
                                "namespaces, workloads")
        defaults = _metadata_map(value.get("defaults"), f"{path}defaults.", problems)
        namespaces = _scoped(value.get("namespaces"), f"{path}namespaces.", problems)
        workloads = _scoped(value.get("workloads"), f"{path}workloads.", problems,
                            scope_form="namespace/name")
        return cls(defaults, namespaces, workloads)


def _scoped(value: Any, path: str, problems: list[str],
            scope_form: str | None = None) -> dict[str, MetadataDefaults]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(f"{path.rstrip('.')}: must be a mapping, not {_kind(value)}")
        return {}
    scoped: dict[str, MetadataDefaults] = {}
    for scope, keys in value.items():
        if scope_form and str(scope).count("/") != 1:
            problems.append(f"{path}{scope}: must be written as {scope_form}")
            continue
        scoped[str(scope)] = _metadata_map(keys, f"{path}{scope}.", problems)
    return scoped


def _metadata_map(value: Any, path: str, problems: list[str]) -> dict[str, str]:
    """Metadata keys with values checked by the same declarations the RPCs use."""
    from scaler.keda.metadata import metadata_keys

    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(f"{path.rstrip('.')}: must be a mapping of metadata keys, "
                        f"not {_kind(value)}")
        return {}
    known = {key.key: key for key in metadata_keys()}
    checked: dict[str, str] = {}
    for name, raw in value.items():
        key = known.get(str(name))
        text = str(raw).lower() if isinstance(raw, bool) else str(raw)
        if key is None:
            problems.append(f"{path}{name}: not a trigger metadata key; known keys: "
                            + ", ".join(known))
            continue
        try:
            schema.read(key, text, text=True)
        except ValueError:
            problems.append(f"{path}{name}: {raw!r} is not {key.accepted}")
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
    node_pools: NodePoolSettings = field(default_factory=NodePoolSettings)
    gpu: GpuSettings = field(default_factory=GpuSettings)


class ConfigError(ValueError):
    """A config document with one or more bad keys; ``problems`` names each one."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        listed = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{listed}")


def load_config(path: str | Path) -> ServiceConfig:
    """Read and validate a YAML config file; raise ConfigError naming every bad key."""
    return read_config(path)[0]


def read_config(path: str | Path) -> tuple[ServiceConfig, str]:
    """As ``load_config``, with the text it parsed (what a watcher of the file starts from)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [f"cannot read the file: {exc.strerror}"]) from exc
    return parse_config(text, source=source), text


def parse_config(text: str, *, source: str = "<config>") -> ServiceConfig:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"not valid YAML: {exc}"]) from exc
    if document is None:
        return ServiceConfig()
    if not isinstance(document, Mapping):
        raise ConfigError(source, [f"the top level must be a mapping, not {_kind(document)}"])
    problems: list[str] = []
    config: ServiceConfig = _build(ServiceConfig, document, "", problems)
    if problems:
        raise ConfigError(source, problems)
    return config


def _build(cls: type[Any], values: Mapping[str, Any], path: str, problems: list[str]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in fields:
            where = f"'{path.rstrip('.')}'" if path else "the top level"
            known = ", ".join(fields)
            problems.append(f"{path}{key}: unknown key; known keys in {where}: {known}")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in values:
            continue
        value = values[name]
        section = _section_class(f)
        if section is not None:
            kwargs[name] = _section(section, value, f"{path}{name}.", problems)
        else:
            converted = _scalar(f, value, f"{path}{name}", problems)
            if converted is not None:
                kwargs[name] = converted
    return cls(**kwargs)


def _section_class(f: dataclasses.Field[Any]) -> type[Any] | None:
    """The settings dataclass of a section field (one built by default_factory), else None."""
    factory: Any = f.default_factory
    if isinstance(factory, type) and dataclasses.is_dataclass(factory):
        return factory
    return None


def _section(section_cls: type[Any], value: Any, path: str, problems: list[str]) -> Any:
    if value is None:
        return section_cls()
    if hasattr(section_cls, "from_document"):
        return section_cls.from_document(value, path, problems)
    if not isinstance(value, Mapping):
        problems.append(f"{path.rstrip('.')}: must be a mapping of keys, not {_kind(value)}")
        return section_cls()
    before = len(problems)
    built = _build(section_cls, value, path, problems)
    cross_check = getattr(built, "cross_check", None)
    if cross_check is not None and len(problems) == before:  # each key fine on its own
        problems += cross_check(path)
    return built


def _scalar(f: dataclasses.Field[Any], value: Any, path: str, problems: list[str]) -> Any:
    expected = f.type if isinstance(f.type, str) else f.type.__name__
    converted = _convert(expected, value)
    if converted is None:
        problems.append(f"{path}: {value!r} is not {_article(expected)} ({f.metadata['doc']})")
        return None
    check: Check | None = f.metadata.get("check")
    reason = check(converted) if check else None
    if reason:
        problems.append(f"{path}: {value!r} is out of range: {reason} ({f.metadata['doc']})")
        return None
    return converted


def _convert(expected: str, value: Any) -> Any:
    if isinstance(value, bool):
        return value if expected == "bool" else None
    if expected == "int":
        return value if isinstance(value, int) else None
    if expected == "float":
        ok = isinstance(value, int | float) and math.isfinite(value)
        return float(value) if ok else None
    if expected == "str":
        return value if isinstance(value, str) else None
    return None


def _article(type_name: str) -> str:
    return {"int": "an integer", "float": "a number", "str": "a string", "bool": "true/false"}[
        type_name
    ]


def _kind(value: Any) -> str:
    return type(value).__name__


RESTART_ONLY = ("server", "scrape.max_concurrency")


def needs_restart(old: ServiceConfig, new: ServiceConfig) -> list[str]:
    """Settings that changed but only take effect at the next start (listening sockets,
    the shared connection pool, the dcgm-exporter watch, node pools and their Lease)."""
    changed = [name for name in ("server", "gpu", "node_pools")
               if getattr(old, name) != getattr(new, name)]
    if old.scrape.max_concurrency != new.scrape.max_concurrency:
        changed.append("scrape.max_concurrency")
    return changed


def describe(cls: type[Any] = ServiceConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, doc) for every setting, for docs and `--help`."""
    rows: list[tuple[str, str, str]] = []
    for f in dataclasses.fields(cls):
        section = _section_class(f)
        if section is not None and hasattr(section, "from_document"):
            doc = " ".join((section.__doc__ or "").split())
            rows.append((f"{prefix}{f.name}", "{}", doc))
        elif section is not None:
            rows += describe(section, f"{prefix}{f.name}.")
        else:
            rows.append((f"{prefix}{f.name}", repr(f.default), f.metadata["doc"]))
    return rows
