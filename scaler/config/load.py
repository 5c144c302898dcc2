"""Reading the service config: a YAML document checked against the settings' declarations.

Loading validates the whole document and reports *every* bad key at once with its dotted
path, so a user fixes a ConfigMap in one go::

    scrape.interval_s: -1 is out of range: must be > 0 (Seconds between two scrapes ...)
    scrape.intreval_s: unknown key; known keys in 'scrape': interval_s, timeout_s, ...

Keys that only make sense together (``server.tls_*``) are checked together once each is
valid alone, and the files they name are read and loaded as at start. A config that fails
validation is never partly applied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scaler.config.api_token import ApiToken, read_api_token
from scaler.config.documents import YamlProblem, config_map_data, is_config_map, load_yaml
from scaler.config.node_pools import NodePool, NodePoolSettings
from scaler.config.settings import ServerSettings, ServiceConfig
from scaler.config.tls import TlsMaterial, read_tls
from scaler.schema import Problem, build, declared, validate


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
    """The config in ``text``: the settings document, or a ConfigMap manifest holding it in
    ``data["config.yaml"]``; ConfigError naming every problem (YAML ones by line and column)."""
    try:
        document = load_yaml(text)
        if is_config_map(document):
            document = config_map_data(text, document)
    except YamlProblem as exc:
        raise ConfigError(source, [str(exc)]) from exc
    if document is None:
        return ServiceConfig()
    if not isinstance(document, Mapping):
        raise ConfigError(source, [f"the top level must be a mapping, not {_kind(document)}"])
    sections = {f.name: f for f in dataclasses.fields(ServiceConfig)}
    problems = [f"{key}: unknown key; known keys in the top level: " + ", ".join(sections)
                for key in document if key not in sections]
    built: dict[str, Any] = {}
    for name, f in sections.items():
        if name in document:
            section: Any = f.default_factory  # every section is built by its class
            built[name], found = _section(section, document[name], f"{name}.")
            problems += found
    if problems:
        raise ConfigError(source, problems)
    config = ServiceConfig(**built)
    problems = validate(config)  # rules across sections, once each section is fine
    if problems:
        raise ConfigError(source, problems)
    return config


def _section(cls: type[Any], value: Any, path: str) -> tuple[Any, list[str]]:
    """One section from its YAML value, and the problems found in it (worded)."""
    if value is None:
        return cls(), []
    from_document = getattr(cls, "from_document", None)
    if from_document is not None:
        found: list[Problem] = []
        return from_document(value, path, found), [worded(p) for p in found]
    if not isinstance(value, Mapping):
        return cls(), [f"{path.rstrip('.')}: must be a mapping of keys, not {_kind(value)}"]
    section, problems = build(cls, value)
    return section or cls(), [worded(p, path) for p in problems]


def worded(problem: Problem, path: str = "") -> str:
    """A problem as one line naming its dotted key, the value and what is accepted."""
    key = f"{path}{problem.key}"
    if problem.kind == "rule":
        return problem.detail
    if problem.kind == "unknown":
        where = key.rsplit(".", 1)[0] if "." in key else ""
        return (f"{key}: unknown key; known keys in {f'{where!r}' if where else 'the top level'}"
                f": {problem.detail}")
    doc = f" ({problem.field.setting.doc})" if problem.field else ""
    if problem.kind == "range":
        return f"{key}: {problem.raw!r} is out of range: {problem.detail}{doc}"
    if problem.kind == "required":
        return f"{key}: required: {problem.detail}"
    accepted = problem.field.accepted if problem.field else problem.detail
    return f"{key}: {problem.raw!r} is not {accepted}{doc}"


def load_tls(server: ServerSettings) -> TlsMaterial | None:
    """The TLS files' contents, or None for plaintext; ConfigError naming each bad key.

    Called at start, when the files are read for serving; a config loaded from a file
    was checked the same way already, so this fails only if the files changed since.
    """
    material, problems = read_tls(server, "server.")
    if problems:
        raise ConfigError("server TLS settings", problems)
    return material


def load_api_token(server: ServerSettings) -> ApiToken | None:
    """The metrics-api route's bearer token, or None (the route off); ConfigError naming the
    key when its file cannot be used. Called at start, like ``load_tls``."""
    token, problems = read_api_token(server.http_api_token_file, "server.")
    if problems:
        raise ConfigError("server.http_api_token_file", problems)
    return token


def needs_restart(old: ServiceConfig, new: ServiceConfig) -> list[str]:
    """Settings that changed but only take effect at the next start (listening sockets,
    the shared connection pool, the dcgm-exporter watch, node pools and their Lease)."""
    changed = [name for name in ("server", "gpu", "node_pools")
               if getattr(old, name) != getattr(new, name)]
    if old.scrape.max_concurrency != new.scrape.max_concurrency:
        changed.append("scrape.max_concurrency")
    return changed


def describe() -> list[tuple[str, str, str]]:
    """(dotted key, default, doc) for every setting, for ``scaler settings`` and the README."""
    rows: list[tuple[str, str, str]] = []
    for f in dataclasses.fields(ServiceConfig):
        section: Any = f.default_factory
        rows += [(f"{f.name}.{d.key}", d.shown_default, d.setting.doc)
                 for d in declared(section)]
        if section is NodePoolSettings:
            rows.append(("node_pools.pools", "{}", " ".join((section.__doc__ or "").split())))
            rows += [(f"node_pools.pools.<name>.{d.key}", d.shown_default, d.setting.doc)
                     for d in declared(NodePool)]
        elif not declared(section):
            rows.append((f.name, "{}", " ".join((section.__doc__ or "").split())))
    return rows


def _kind(value: Any) -> str:
    return type(value).__name__
