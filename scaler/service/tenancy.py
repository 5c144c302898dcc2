"""The operator's limits on what one call's metadata may make the scaler do.

Every RPC (and metrics-api request) names a workload by its metadata; before that workload is
registered, fetched from or looked up in Kubernetes, ``Admission`` holds the merged metadata
(the trigger's and ``tuning``'s) to the ``tenancy`` and ``workloads`` settings:

- ``tenancy.max_metadata_bytes``, ``workloads.max_endpoints``, ``workloads.max_workloads``:
  ``LimitExceeded`` (RESOURCE_EXHAUSTED) naming the setting;
- ``tenancy.cross_namespace`` false: ``podNamespace`` of another namespace, a
  ``prometheusSelector`` matching the namespace other than ``namespace="<own>"``, and
  ``historyQuery`` in the trigger itself are ``MetadataError`` (INVALID_ARGUMENT);
- ``tenancy.endpoint_networks``: every address of the static ``endpoints`` and
  ``gpuEndpoints`` (names resolved by the guard, never on the event loop) must be allowed,
  else ``MetadataError``; a name not resolved yet is ``NamesPending``.

The checks run at every call, against the config of the moment, so a tightened setting
refuses a registered workload at its next call. They cost dictionary lookups once a
spec's hosts are known: the RPC path stays in microseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from adapters.sources.guard import AddressGuard, literal
from scaler.config.settings import ServiceConfig
from scaler.config.tenancy import TenancySettings
from scaler.keda.metadata import FROM_ENV, MetadataError, WorkloadSpec, over_tuning
from scaler.service.errors import LimitExceeded, NamesPending, Unavailable

_CHECKED_SPECS = 4096


class Admission:
    def __init__(self, config: Callable[[], ServiceConfig], guard: AddressGuard,
                 spec_for: Callable[[Mapping[str, str]], WorkloadSpec]) -> None:
        """``spec_for``: merged metadata -> spec (MetadataError when bad), cached."""
        self._config = config
        self.guard = guard
        self._spec_for = spec_for
        # id(spec) -> (spec, the settings it was checked under, why its addresses are refused)
        self._checked: dict[int, tuple[WorkloadSpec, TenancySettings, list[str]]] = {}

    def spec(self, namespace: str, name: str, trigger: Mapping[str, str]) -> WorkloadSpec:
        """The spec of a call's trigger metadata merged with tuning, refused past a limit."""
        metadata = over_tuning(self._config().tuning.metadata_for(namespace, name, {}), trigger)
        self.check_size(metadata)
        spec = self._spec_for(metadata)
        self.check(namespace, spec, trigger)
        return spec

    def check_size(self, metadata: Mapping[str, str]) -> None:
        """Refuse metadata over ``tenancy.max_metadata_bytes`` (before it is parsed or kept)."""
        limit = self._config().tenancy.max_metadata_bytes
        chars = sum(len(key) + len(value) for key, value in metadata.items())
        if chars * 4 <= limit:  # UTF-8 takes at most 4 bytes a character
            return
        size = sum(len(key.encode()) + len(value.encode()) for key, value in metadata.items())
        if size > limit:
            raise LimitExceeded("tenancy.max_metadata_bytes", (
                f"the trigger metadata (tuning merged in) holds {size} bytes, more than "
                "tenancy.max_metadata_bytes"
                f"={limit}: nothing is registered; shorten it, or ask the operator to raise the "
                "limit"), 413)

    def check(self, namespace: str, spec: WorkloadSpec, trigger: Mapping[str, str]) -> None:
        """Refuse a spec (merged metadata) past the limits; ``trigger``: the call's own keys."""
        config = self._config()
        count = len(spec.endpoints) + len(spec.gpu_endpoints)
        if count > config.workloads.max_endpoints:
            raise LimitExceeded("workloads.max_endpoints", (
                f"the trigger lists {count} endpoints and gpuEndpoints, more than "
                f"workloads.max_endpoints={config.workloads.max_endpoints}: nothing is "
                "registered or fetched; find the pods through the Kubernetes API "
                "(deployment, statefulSet, labelSelector) instead"), 413)
        if not config.tenancy.cross_namespace:
            problems = namespace_problems(namespace, spec, trigger)
            if problems:
                raise MetadataError(problems)
        self._check_addresses(spec)

    def check_room(self, registered: int) -> None:
        """Refuse a new workload while ``workloads.max_workloads`` are registered."""
        limit = self._config().workloads.max_workloads
        if registered >= limit:
            raise LimitExceeded("workloads.max_workloads", (
                f"{registered} workloads are registered, as many as workloads.max_workloads="
                f"{limit} allows: this one is not registered (KEDA retries; one is dropped when"
                " KEDA stops asking about it for workloads.idle_timeout_s)"), 429)

    def _check_addresses(self, spec: WorkloadSpec) -> None:
        """Every host of the spec allowed, or MetadataError; names not resolved yet:
        NamesPending. A spec of addresses only is checked once per settings (every call of
        the workload asks again: a spec listing 512 pods must not cost 512 checks a call)."""
        tenancy = self._config().tenancy
        known = self._checked.get(id(spec))
        if known is not None and known[0] is spec and known[1] is tenancy:
            problems = known[2]
        else:
            problems, pending = self._host_problems(spec)
            if pending:
                if problems:
                    raise MetadataError(problems)
                raise NamesPending(
                    f"resolving {', '.join(pending)} to check every address against "
                    "tenancy.endpoint_networks before anything is fetched; KEDA retries",
                    lambda: asyncio.gather(*(self.guard.addresses(h) for h in pending),
                                           return_exceptions=True))
            if all(literal(host) is not None for _, host in spec.hosts):
                if len(self._checked) >= _CHECKED_SPECS:
                    self._checked.clear()
                self._checked[id(spec)] = (spec, tenancy, problems)
        if problems:
            raise MetadataError(problems)

    def _host_problems(self, spec: WorkloadSpec) -> tuple[list[str], list[str]]:
        """(why hosts are refused, names not resolved yet)."""
        problems: list[str] = []
        pending: list[str] = []
        guard = self.guard
        for key, host in spec.hosts:
            address = literal(host)
            addresses = (address,) if address is not None else guard.cached(host)
            if addresses is None:
                failure = guard.failure(host)
                if failure is not None:
                    raise Unavailable(f"scalerMetadata key '{key}': {failure}; nothing is "
                                      "fetched from a name whose addresses are not known")
                pending.append(host)
            elif (reason := guard.problem(host, addresses)) is not None:
                problems.append(f"scalerMetadata key '{key}' names {host}: {reason}; only "
                                "pages inside tenancy.endpoint_networks are fetched")
        return problems, pending


def namespace_problems(namespace: str, spec: WorkloadSpec,
                       trigger: Mapping[str, str]) -> list[str]:
    """What reaches outside the ScaledObject's namespace (``tenancy.cross_namespace`` false)."""
    problems = []
    if spec.pod_namespace and spec.pod_namespace != namespace:
        problems.append(
            f"scalerMetadata key 'podNamespace' has value {spec.pod_namespace!r}: only pods of "
            f"the ScaledObject's own namespace {namespace!r} are read "
            "(tenancy.cross_namespace is false); drop the key")
    for matcher in spec.selector_matchers:
        if matcher.label == "namespace" and (matcher.op, matcher.value) != ("=", namespace):
            problems.append(
                f"scalerMetadata key 'prometheusSelector' matches {matcher}: only series of the "
                f"ScaledObject's own namespace {namespace!r} are read, and namespace="
                f"\"{namespace}\" is added for you (tenancy.cross_namespace is false); drop the "
                "namespace matcher")
    if "historyQuery" in trigger or "historyQuery" + FROM_ENV in trigger:
        problems.append(
            "scalerMetadata key 'historyQuery' is the operator's: it runs any PromQL on the "
            "operator's Prometheus, so it is set in the ConfigMap's tuning (e.g. tuning."
            "workloads[\"<namespace>/<name>\"].historyQuery), not in the trigger "
            "(tenancy.cross_namespace is false)")
    return problems
