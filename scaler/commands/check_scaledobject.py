"""`scaler check-scaledobject`: a manifest's ScaledObjects checked offline, as KEDA's calls
would be.

Every ScaledObject in the (multi-document) files whose triggers use this scaler (type
``external`` or ``external-push`` with ``scalerAddress`` on its Service, or ``metrics-api``
with a ``url`` on its decision route) is checked by the service's own admission path
(``ScalerService.spec_of``: tuning merged in, ``scaler.keda.metadata``, the tenancy, node pool
and limit checks), so each problem reads as the gRPC call would be refused. Nothing is
started or resolved: host names in ``endpoints`` are not checked against
``tenancy.endpoint_networks`` here (it says so). Other kinds and other triggers are ignored.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import yaml

from scaler.config.load import ConfigError, read_config
from scaler.config.settings import KEDA_DEFAULT_POLLING_S, ServiceConfig
from scaler.keda.metadata import MetadataError, WorkloadSpec
from scaler.sim.hpa_behavior import behavior_from_spec

if TYPE_CHECKING:
    from scaler.service.service import ScalerService

SERVICE_NAME = "llm-predictive-scaler"  # deploy/base/service.yaml


@dataclass(frozen=True)
class Trigger:
    """One trigger of a ScaledObject that uses this scaler, as KEDA would call with it."""

    where: str  # file: ScaledObject namespace/name trigger N (type)
    namespace: str
    name: str
    metadata: dict[str, str]
    polling_s: float
    problems: tuple[str, ...] = ()  # found reading the manifest, before the scaler's checks
    behavior: object = None  # advanced.horizontalPodAutoscalerConfig.behavior, as written


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "check-scaledobject", help="check the ScaledObjects of a manifest offline, as the "
                                   "scaler would answer KEDA about them",
        description="Check, offline, every ScaledObject in the manifests whose triggers use "
                    "this scaler, as the scaler would answer KEDA's calls about it (the same "
                    "messages); exit 1 on any problem.")
    parser.add_argument("files", nargs="+", metavar="FILE", type=Path,
                        help="manifest(s), several documents each (other kinds are ignored)")
    parser.add_argument("--config", metavar="PATH",
                        help="the scaler's settings (or ConfigMap manifest): tuning, tenancy, "
                             "node pools (default: built-in)")
    parser.add_argument("--service", default=SERVICE_NAME, metavar="NAME",
                        help="the scaler's Service name: triggers whose address starts with it"
                             " are this scaler's")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = read_config(args.config)[0] if args.config else ServiceConfig()
    except ConfigError as exc:
        print(f"scaler: {exc}", file=sys.stderr)
        return 1
    logging.basicConfig(level="WARNING", format="note: %(message)s")  # e.g. a clamped ask
    service = _service(config)
    failed = False
    for path in args.files:
        try:
            triggers = list(triggers_in(path, args.service))
        except (OSError, yaml.YAMLError) as exc:
            print(f"{path}: cannot read: {exc}", file=sys.stderr)
            failed = True
            continue
        if not triggers:
            print(f"{path}: no ScaledObject trigger uses this scaler ({args.service})")
        for trigger in triggers:
            problems, notes = check(service, trigger)
            failed |= bool(problems)
            print(f"{trigger.where}: " + (f"{len(problems)} problem(s)" if problems else "OK"))
            for line in [*problems, *(f"note: {n}" for n in notes)]:
                print(f"  {line}")
    return 1 if failed else 0


def check(service: ScalerService, trigger: Trigger) -> tuple[list[str], list[str]]:
    """(problems, notes) of one trigger, worded as the service refuses a call."""
    from scaler.service.errors import LimitExceeded, NamesPending, Unavailable

    problems, notes = list(trigger.problems), list[str]()
    idle = service.config.workloads.idle_timeout_s
    if trigger.polling_s >= idle:
        problems.append(f"pollingInterval ({trigger.polling_s:g} s) must be below the scaler's "
                        f"workloads.idle_timeout_s ({idle:g} s): it drops a workload KEDA has "
                        "not asked about for that long")
    if problems:
        return problems, notes
    try:
        spec = service.spec_of(trigger.namespace, trigger.name, trigger.metadata)
        notes += behavior_notes(trigger.behavior, spec)
    except MetadataError as exc:
        problems += exc.problems
    except NamesPending as exc:
        notes.append(f"not checked offline: {exc}")
    except (LimitExceeded, Unavailable) as exc:
        problems.append(str(exc))
    return problems, notes


def triggers_in(path: Path, service: str) -> Iterator[Trigger]:
    """The triggers using this scaler, of every ScaledObject in the file."""
    for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if not isinstance(document, Mapping) or document.get("kind") != "ScaledObject":
            continue
        meta = document.get("metadata") or {}
        spec = document.get("spec") or {}
        namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name"))
        polling = float(spec.get("pollingInterval") or KEDA_DEFAULT_POLLING_S)
        for number, trigger in enumerate(spec.get("triggers") or [], start=1):
            kind = trigger.get("type") if isinstance(trigger, Mapping) else None
            metadata = trigger.get("metadata") if isinstance(trigger, Mapping) else None
            if not isinstance(metadata, Mapping):
                continue
            where = f"{path}: ScaledObject {namespace}/{name} trigger {number} ({kind})"
            found = _ours(kind, metadata, service)
            if found is not None:
                values, problems = found
                yield Trigger(where, namespace, name, values, polling,
                              tuple(problems + _route_problems(kind, metadata, namespace, name)),
                              _hpa_behavior(spec))


def _hpa_behavior(spec: Mapping[str, Any]) -> object:
    """``advanced.horizontalPodAutoscalerConfig.behavior`` as written (None where absent)."""
    advanced = spec.get("advanced")
    config = advanced.get("horizontalPodAutoscalerConfig") if isinstance(advanced,
                                                                        Mapping) else None
    return config.get("behavior") if isinstance(config, Mapping) else None


def behavior_notes(written: object, spec: WorkloadSpec) -> list[str]:
    """What the HPA KEDA creates would do to the scaler's count (notes, not problems: each
    is a choice, but rarely the one intended). The answer is a replica count already
    stabilised by the scaler, which the HPA should carry out exactly and at once."""
    try:
        if not isinstance(written, Mapping | None):
            raise ValueError(f"must be a mapping, got {written!r}")
        behavior = behavior_from_spec(written or {})
    except (ValueError, KeyError, TypeError) as exc:
        return [f"advanced.horizontalPodAutoscalerConfig.behavior not read: {exc}"]
    notes = []
    down, up = behavior.tolerances
    if up > 0 or down > 0:
        notes.append(
            f"the HPA's tolerance ({up:g} up, {down:g} down) leaves the scaler's count unapplied "
            f"while it is within that share of the running count (a plan of 21 over 20 "
            f"running stays 20): set behavior.scaleUp.tolerance and scaleDown.tolerance to 0 "
            f"(Kubernetes with HPAConfigurableTolerance) as deploy/examples/"
            f"scaledobject-vllm.yaml does")
    discovered = bool(spec.deployment or spec.stateful_set or spec.label_selector)
    window = behavior.scale_down.stabilization_s
    if window > 0 and discovered:
        notes.append(
            f"the HPA's scale-down window ({window:g} s) comes on top of the scaler's own "
            f"(scaleDownWindowSeconds) and delays every scale-down again: set "
            f"behavior.scaleDown.stabilizationWindowSeconds to 0")
    elif window == 0 and spec.endpoints:
        notes.append(
            "with static endpoints the scaler sees only the pods listed, not replicas still "
            "starting, so it cannot hold a scale-down while they start; without the HPA's "
            "scale-down window the count can drop before they serve: leave "
            "behavior.scaleDown.stabilizationWindowSeconds out (300 s)")
    return notes


def _ours(kind: Any, metadata: Mapping[str, Any], service: str
          ) -> tuple[dict[str, str], list[str]] | None:
    """The metadata KEDA would send this scaler and what is wrong in its YAML, or None when
    the trigger is another scaler's."""
    if kind in ("external", "external-push"):
        address = str(metadata.get("scalerAddress", ""))
        if not _is_ours(address.rpartition(":")[0] or address, service):
            return None
        values = {str(k): v for k, v in metadata.items()}
    elif kind == "metrics-api":
        url = urlsplit(str(metadata.get("url", "")))
        if not _is_ours(url.hostname or "", service):
            return None
        values = dict(parse_qsl(url.query, keep_blank_values=True))
    else:
        return None
    problems = [f"metadata key {k!r}: {v!r} must be a string in YAML (KEDA's metadata is "
                f"strings; quote it: \"{v}\")" for k, v in values.items()
                if not isinstance(v, str)]
    return {k: str(v) for k, v in values.items()}, problems


def _is_ours(host: str, service: str) -> bool:
    return host == service or host.startswith(f"{service}.")


def _route_problems(kind: Any, metadata: Mapping[str, Any], namespace: str,
                    name: str) -> list[str]:
    """A metrics-api URL must name this ScaledObject on the decision route."""
    if kind != "metrics-api":
        return []
    from scaler.keda.http_server import DECISION_ROUTE

    path = urlsplit(str(metadata.get("url", ""))).path
    route = re.match("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", DECISION_ROUTE) + "$", path)
    if route is None:
        return [f"url path {path!r} is not the decision route {DECISION_ROUTE}"]
    if (route["namespace"], route["name"]) != (namespace, name):
        return [f"url path names {route['namespace']}/{route['name']}, not this ScaledObject "
                f"{namespace}/{name}: the scaler would keep it as another workload"]
    return []


def problems_in(paths: Sequence[Path], config: ServiceConfig | None = None) -> dict[str, list[str]]:
    """Each trigger's problems (empty: fine), for tests and scripts."""
    service = _service(config or ServiceConfig())
    return {t.where: check(service, t)[0] for path in paths for t in triggers_in(path,
                                                                               SERVICE_NAME)}


def _service(config: ServiceConfig) -> ScalerService:
    """The service, never started: only its admission checks run (imported here: the service
    and its gRPC and HTTP libraries load only for this command)."""
    from scaler.service.service import ScalerService

    return ScalerService(config)
