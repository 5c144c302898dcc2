"""Find one workload's pods through the Kubernetes API: a LIST + WATCH cache, kept correct.

Why a cache and not a LIST per scrape: the scaler scrapes every workload every few seconds, and
KEDA asks about many workloads. One watch per workload keeps the pod set current (a pod that
turns Ready is seen within the watch latency, not at the next poll) at the cost of one long-lived
request, and ``pods()``, ``ready_endpoints()`` and ``counts()`` answer from memory.

The loop (one asyncio task per ``PodDiscovery``), as client-go's reflector does it:

1. Resolve the label selector: a bare selector is used as given; for a Deployment or StatefulSet
   the object is read and its ``spec.selector`` (matchLabels and matchExpressions: In, NotIn,
   Exists, DoesNotExist) is turned into a selector string. This is done again at every relist,
   so a recreated object is followed.
2. LIST the namespace's pods with that selector (paged), *replace* the cache with the result and
   remember the list's ``resourceVersion``. Replacing, not merging, is what makes the cache
   correct after a reconnect: a pod deleted while no watch was open is simply not in the list.
   ``synced`` is set after the first LIST.
3. WATCH from that ``resourceVersion`` (``timeoutSeconds`` 300, bookmarks allowed) and apply
   ADDED / MODIFIED / DELETED to the cache; every event, BOOKMARK included, moves the remembered
   ``resourceVersion`` on. When the server ends the watch (its timeout), watch again from the
   remembered version: no relist needed.
4. 410 Gone (an ERROR event with code 410, or an HTTP 410 answer to the watch) means the
   remembered version is older than the server's history: events were lost, so relist at once
   (step 1). A second 410 with no event in between is treated as a failure (below), so a broken
   server cannot make us relist in a tight loop.
5. Any other failure (connection refused or dropped, a client-side timeout, HTTP 429 or 5xx, an
   ERROR event, a 4xx such as RBAC's 403, a body that is not JSON, or a watch that closes within
   a second without any event) sleeps the next step of ``backoff_s`` (the last step repeats) and
   relists. Retry-After (header, or the Status's ``details.retryAfterSeconds``) is honoured: the
   sleep is at least that long, capped at 60 s. The back-off restarts from its first step only
   when a watch works (it delivers an event, or runs until the server ends it): a good LIST
   followed by a refused WATCH keeps backing off. While failing the cache keeps the last known
   pods and ``last_error`` says why they may be stale (cleared by the next good LIST). A failure
   is logged once when it starts or changes kind (not once per retry), and its end once, when a
   watch works again.

Why raw ``list_namespaced_pod(..., watch="true", _preload_content=False)`` and not
``kubernetes_asyncio.watch.Watch().stream()``: Watch hides the decisions this loop must own
(without ``timeout_seconds`` it reconnects by itself and swallows the first 410; with it, it just
ends), drops the response headers of a failed request (no Retry-After), deserialises every event
into a ``V1Pod`` model (slow; we read a few fields of the JSON), builds its own ``ApiClient``
from the default configuration, and sends Python's ``True`` as ``watch=True``: the API server's
parser accepts that, but stricter servers and mocks (kmock) recognise only ``watch=true``, which
is what kubectl sends and what this module sends. With ``_preload_content=False`` HTTP errors
are not raised as ``ApiException``: every answer's status is checked (``errors.fetch_json``
for LIST and GET, the watch here). Lines are read with ``readline()`` on kubernetes_asyncio's
session, whose 2 MiB read buffer holds any single object.

What a pod is to discovery (targets, ``PodInfo``, readiness, selectors) is in ``pods``; what a
failed request means and says is in ``errors``. No kube config is loaded here: the caller passes
an ``ApiClient`` (in-cluster or kubeconfig).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

from kubernetes_asyncio import client

from adapters.kubernetes import wire
from adapters.kubernetes.errors import (
    TRANSPORT_ERRORS,
    DiscoveryError,
    connection_failure,
    error_event_failure,
    fetch_json,
    http_failure,
    raw_response,
)
from adapters.kubernetes.pods import (
    PodCounts,
    PodInfo,
    WorkloadTarget,
    pod_info,
    selector_from_spec,
)

__all__ = ["DEFAULT_BACKOFF_S", "PodDiscovery"]

log = logging.getLogger("adapters.kubernetes.discovery")

WatchEnd = Literal["expired", "closed"]

DEFAULT_BACKOFF_S: tuple[float, ...] = (0.5, 1, 2, 5, 10, 30)
WATCH_TIMEOUT_S = 300          # server-side timeoutSeconds of one watch request
CONNECT_TIMEOUT_S = 10.0       # client-side connect timeout of a watch request
LIST_TIMEOUT_S = 60.0          # client-side total timeout of one LIST page or GET
READ_GRACE_S = 30.0            # a watch is dead if silent this long past its server timeout
SHORT_WATCH_S = 1.0            # a watch closed sooner than this without an event is a failure
RETRY_AFTER_CAP_S = 60.0       # the longest Retry-After honoured
PAGE_SIZE = 500                # pods per LIST page


class PodDiscovery:
    """The pods of one WorkloadTarget, kept current by a LIST + WATCH loop (see the module doc).

    ``sleep`` and ``clock`` (monotonic seconds) are injectable so tests see the back-off without
    waiting. ``on_change(discovery)`` is called after each change of the cached pods.
    """

    def __init__(self, api: client.ApiClient, target: WorkloadTarget, *,
                 backoff_s: Sequence[float] = DEFAULT_BACKOFF_S,
                 on_change: Callable[[PodDiscovery], None] | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 watch_timeout_s: int = WATCH_TIMEOUT_S, page_size: int = PAGE_SIZE) -> None:
        _check_backoff(backoff_s)
        if watch_timeout_s < 1:
            raise ValueError(f"watch_timeout_s must be >= 1, got {watch_timeout_s!r}")
        if page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {page_size!r}")
        self.target = target
        self.on_change = on_change
        self.synced = asyncio.Event()
        self._host = str(api.configuration.host)
        self._core = client.CoreV1Api(api)
        self._apps = client.AppsV1Api(api)
        self._backoff_s = tuple(float(step) for step in backoff_s)
        self._sleep = sleep
        self._clock = clock
        self._watch_timeout_s = watch_timeout_s
        self._page_size = page_size
        self._pods: dict[str, PodInfo] = {}
        self._selector: str | None = None
        self._resource_version: str | None = None
        self._failures = 0            # consecutive failures: the next back-off step
        self._expired_in_a_row = 0    # 410s with no event in between
        self._error: DiscoveryError | None = None  # the failure being retried
        self._logged: str | None = None  # the key of the last failure logged
        self._task: asyncio.Task[None] | None = None

    # -- reading the cache ------------------------------------------------------------------

    def pods(self) -> list[PodInfo]:
        """The cached pods, sorted by name."""
        return [self._pods[name] for name in sorted(self._pods)]

    def ready_endpoints(self) -> list[tuple[str, str]]:
        """(pod name, metrics URL) of the Ready, not deleting pods that have an IP."""
        endpoints: list[tuple[str, str]] = []
        for pod in self.pods():
            url = pod.metrics_url(self.target.port, self.target.path)
            if pod.ready and not pod.deleting and url is not None:
                endpoints.append((pod.name, url))
        return endpoints

    def counts(self) -> PodCounts:
        return PodCounts.of(self.pods())

    @property
    def selector(self) -> str | None:
        """The label selector in use (None before it is first resolved)."""
        return self._selector

    @property
    def resource_version(self) -> str | None:
        """The resourceVersion the next watch starts from."""
        return self._resource_version

    @property
    def last_error(self) -> str | None:
        """Why the cache may be stale: the failure being retried, None when healthy."""
        return None if self._error is None else str(self._error)

    async def replicas(self) -> int | None:
        """The target's ``spec.replicas`` from its scale subresource; None for a bare selector.

        Raises DiscoveryError when the API server cannot answer.
        """
        target = self.target
        if target.kind == "selector":
            return None
        read = (self._apps.read_namespaced_deployment_scale if target.kind == "Deployment"
                else self._apps.read_namespaced_stateful_set_scale)
        what = f"GET {target.describe}/scale"
        scale = await fetch_json(
            read(target.name, target.namespace, _preload_content=False,
                 _request_timeout=LIST_TIMEOUT_S), what, self._host)
        replicas = wire.mapping(scale.get("spec")).get("replicas", 0)  # 0 is omitted on the wire
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise DiscoveryError("decode", f"{what}: spec.replicas is {replicas!r}, not a count")
        return replicas

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the LIST + WATCH loop in the background; ``synced`` is set after the first LIST."""
        if self._task is not None:
            raise RuntimeError(f"pod discovery for {self.target.describe} is already started")
        self._task = asyncio.create_task(self._run(), name=f"discovery {self.target.describe}")

    async def stop(self) -> None:
        """Stop the loop and close its open request; the cache keeps the last known pods."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait([task])

    # -- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self._relist()
                await self._watch_until_expired()
            except DiscoveryError as failure:
                await self._back_off(failure)
            except Exception as exc:  # a bug must not end discovery for good: log it, retry
                log.exception("pod discovery for %s: unexpected error", self.target.describe)
                await self._back_off(DiscoveryError(
                    f"unexpected {type(exc).__name__}", f"unexpected {type(exc).__name__}: {exc}"))

    async def _back_off(self, failure: DiscoveryError) -> None:
        if failure.key != self._logged:
            log.warning("pod discovery for %s: %s (retrying with back-off)",
                        self.target.describe, failure)
            self._logged = failure.key
        self._error = failure
        delay = _delay(self._backoff_s, self._failures, failure.retry_after_s)
        self._failures += 1
        await self._sleep(delay)

    async def _relist(self) -> None:
        selector = await self._resolve_selector()
        items, resource_version = await self._list_pods(selector)
        pods = {pod.name: pod for pod in map(pod_info, items) if pod is not None}
        changed = pods != self._pods
        self._selector, self._pods, self._resource_version = selector, pods, resource_version
        self._error = None  # the cache is current again (the watch may still fail)
        self.synced.set()
        if changed:
            self._notify()

    async def _resolve_selector(self) -> str:
        target = self.target
        if target.kind == "selector":
            assert target.selector is not None  # WorkloadTarget checks it
            return target.selector
        read = (self._apps.read_namespaced_deployment if target.kind == "Deployment"
                else self._apps.read_namespaced_stateful_set)
        obj = await fetch_json(
            read(target.name, target.namespace, _preload_content=False,
                 _request_timeout=LIST_TIMEOUT_S), f"GET {target.describe}", self._host)
        return selector_from_spec(obj, target.describe)

    async def _list_pods(self, selector: str) -> tuple[list[Mapping[str, Any]], str | None]:
        what = f"LIST pods in {self.target.namespace} ({selector})"
        items: list[Mapping[str, Any]] = []
        params: dict[str, Any] = {"label_selector": selector, "limit": self._page_size,
                                  "_preload_content": False, "_request_timeout": LIST_TIMEOUT_S}
        while True:
            page = await fetch_json(
                self._core.list_namespaced_pod(self.target.namespace, **params), what, self._host)
            page_items = page.get("items") or []
            if not isinstance(page_items, list):
                raise DiscoveryError("decode", f"{what}: items is not a list: {page_items!r:.120}")
            items.extend(wire.mapping(item) for item in page_items)
            metadata = wire.mapping(page.get("metadata"))
            params["_continue"] = wire.text(metadata.get("continue"))
            if params["_continue"] is None:
                return items, wire.text(metadata.get("resourceVersion"))

    async def _watch_until_expired(self) -> None:
        """Watch again and again from the remembered resourceVersion until a 410."""
        while True:
            if await self._watch_once() == "closed":
                continue
            self._expired_in_a_row += 1
            if self._expired_in_a_row > 1:
                raise DiscoveryError("expired", (
                    f"WATCH pods in {self.target.namespace} answered 410 Gone again right "
                    "after a relist; is the API server's watch cache healthy?"))
            log.debug("pod discovery for %s: watch expired (410 Gone), relisting",
                      self.target.describe)
            return

    async def _watch_once(self) -> WatchEnd:
        what = f"WATCH pods in {self.target.namespace} ({self._selector})"
        started, events = self._clock(), 0
        params: dict[str, Any] = {
            "label_selector": self._selector, "resource_version": self._resource_version,
            "timeout_seconds": self._watch_timeout_s,
            "watch": "true", "allow_watch_bookmarks": "true",  # the wire form (see module doc)
            "_preload_content": False,
            "_request_timeout": (CONNECT_TIMEOUT_S, self._watch_timeout_s + READ_GRACE_S)}
        try:
            resp = raw_response(
                await self._core.list_namespaced_pod(self.target.namespace, **params))
        except TRANSPORT_ERRORS as exc:
            raise connection_failure(what, exc, self._host) from exc
        try:
            if resp.status == 410:
                return "expired"
            if resp.status >= 300:
                raise await http_failure(resp, what)
            while line := await resp.content.readline():
                if not line.strip():
                    continue  # a keep-alive blank line
                if self._apply(_decode_event(line, what), what) == "expired":
                    return "expired"
                events += 1
                if events == 1:
                    self._healthy()
        except TRANSPORT_ERRORS as exc:
            raise connection_failure(what, exc, self._host) from exc
        except ValueError as exc:  # aiohttp's "Chunk too big": a line past the read buffer
            raise DiscoveryError("decode", f"{what}: unreadable event: {exc}") from exc
        finally:
            resp.close()
        if events == 0 and self._clock() - started < SHORT_WATCH_S:
            raise DiscoveryError("short watch", (
                f"{what} was closed after {self._clock() - started:.2f} s without any event; "
                "is a proxy between the scaler and the API server cutting long requests?"))
        self._healthy()
        return "closed"

    def _healthy(self) -> None:
        """A watch works (it delivered an event, or ran until the server ended it): restart the
        back-off and say once that a logged failure is over."""
        self._failures = self._expired_in_a_row = 0
        if self._logged is not None:
            log.info("pod discovery for %s recovered: watching %d pods",
                     self.target.describe, len(self._pods))
            self._logged = None

    def _apply(self, event: Mapping[str, Any], what: str) -> WatchEnd | None:
        """Apply one watch event to the cache; "expired" for a 410 ERROR event."""
        kind, obj = event.get("type"), wire.mapping(event.get("object"))
        if kind == "ERROR":
            if obj.get("code") == 410:
                return "expired"
            raise error_event_failure(obj, what)
        version = wire.text(wire.mapping(obj.get("metadata")).get("resourceVersion"))
        if version is not None:
            self._resource_version = version
        pod = pod_info(obj) if kind in ("ADDED", "MODIFIED", "DELETED") else None
        if pod is None:
            return None  # BOOKMARK, an unknown type, or an object without a name
        if kind == "DELETED":
            changed = self._pods.pop(pod.name, None) is not None
        else:
            changed = self._pods.get(pod.name) != pod
            self._pods[pod.name] = pod
        if changed:
            self._notify()
        return None

    def _notify(self) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(self)
        except Exception:
            log.exception("pod discovery for %s: on_change failed", self.target.describe)


def _decode_event(line: bytes, what: str) -> Mapping[str, Any]:
    try:
        event = json.loads(line)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        raise DiscoveryError("decode", (
            f"{what} sent a line that is not a watch event: {line[:120]!r}; is the "
            "configured host a Kubernetes API server?"))
    return event


def _delay(backoff_s: Sequence[float], failures: int, retry_after_s: float | None) -> float:
    """The back-off step after ``failures`` failures in a row (the last step repeats), but at
    least the server's Retry-After, up to ``RETRY_AFTER_CAP_S``."""
    step = backoff_s[min(failures, len(backoff_s) - 1)]
    if retry_after_s is None:
        return step
    return max(step, min(retry_after_s, RETRY_AFTER_CAP_S))


def _check_backoff(backoff_s: Sequence[float]) -> None:
    if not backoff_s:
        raise ValueError("backoff_s must have at least one step, got ()")
    for step in backoff_s:
        if not (isinstance(step, int | float) and math.isfinite(step) and step >= 0):
            raise ValueError(f"backoff_s steps must be finite seconds >= 0, got {step!r}")
