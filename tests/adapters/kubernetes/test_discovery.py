"""Pod discovery against kmock's Kubernetes emulator, over real HTTP, with the real client.

kmock serves LIST, WATCH, GET, POST, PATCH and DELETE from an in-memory store and streams the
changes made through its API to open watches. Test-specific answers (410, 429, 500, a cut
connection, a Scale object) are reactions that take precedence over the emulator for the
requests they match (``[:1]`` = only the first such request). Its emulator does not filter by
labelSelector nor keep resourceVersions (every list says ``...``), so the tests put only the
workload's pods in the namespace and check the selector in the recorded requests.

Back-off sleeps go through a recording fake that moves a hand-moved clock by the delay (the
back-off waits on the clock, as the "short watch" check reads it): the delays are asserted,
nothing waits.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import kmock as kmock_lib
import pytest
from kubernetes_asyncio.client import ApiClient, Configuration, CoreV1Api

from adapters.kubernetes.discovery import PodDiscovery
from adapters.kubernetes.errors import DiscoveryError
from adapters.kubernetes.pods import PodCounts, PodInfo, WorkloadTarget
from tests.adapters.kubernetes.test_errors import status
from tests.adapters.kubernetes.test_pods import CREATED, NS, READY_AT, epoch, pod
from tests.clock import ManualClock
from tests.conftest import wait_until

PODS = kmock_lib.resource("v1", "pods")
DEPLOYMENTS = kmock_lib.resource("apps/v1", "deployments")
STATEFULSETS = kmock_lib.resource("apps/v1", "statefulsets")
SELECTOR = WorkloadTarget(namespace=NS, kind="selector", name="", selector="app=llama")
LOGGER = "adapters.kubernetes.discovery"


class RecordingSleep:
    """Records back-off delays and moves ``clock`` by them, returning at once; after ``limit``
    calls it blocks (until the discovery is stopped) so a permanently failing loop does not
    spin."""

    def __init__(self, limit: int = 20) -> None:
        self.delays: list[float] = []
        self.limit = limit
        self.clock = ManualClock()

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.clock.advance(delay)
        if len(self.delays) >= self.limit:
            await asyncio.Event().wait()
        await asyncio.sleep(0)


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def api(kmock: kmock_lib.KubernetesEmulator) -> AsyncIterator[ApiClient]:
    """A real client on kmock; pods are declared so an empty namespace lists (not 404s)."""
    kmock.resources["v1/pods"] = {}
    async with ApiClient(Configuration(host=str(kmock.url))) as api_client:
        yield api_client


Factory = Callable[..., PodDiscovery]


@pytest.fixture
async def discovery(api: ApiClient, sleep: RecordingSleep) -> AsyncIterator[Factory]:
    """Build PodDiscovery instances on kmock with the recording sleep; stopped at the end."""
    made: list[PodDiscovery] = []

    def make(target: WorkloadTarget = SELECTOR, **kwargs: Any) -> PodDiscovery:
        kwargs.setdefault("sleep", sleep)
        kwargs.setdefault("clock", sleep.clock.monotonic)
        kwargs.setdefault("backoff_s", (0.5, 1, 2, 5))
        made.append(PodDiscovery(kwargs.pop("api", api), target, **kwargs))
        return made[-1]

    yield make
    for item in made:
        await item.stop()


async def started(discovery: PodDiscovery) -> PodDiscovery:
    await discovery.start()
    async with asyncio.timeout(5):
        await discovery.synced.wait()
    return discovery


def names(discovery: PodDiscovery) -> list[str]:
    return [p.name for p in discovery.pods()]


def requests(kmock: kmock_lib.KubernetesEmulator, action: str) -> list[kmock_lib.Request]:
    return list(kmock[action, PODS])


def cut_connection(request: kmock_lib.Request) -> None:
    """A live-stream item that drops the TCP connection mid-watch (no clean end)."""
    raw = request._raw_request
    assert raw is not None and raw.transport is not None
    raw.transport.abort()


# -- the cache follows the pods -------------------------------------------------------------


async def test_pods_come_and_go(kmock: kmock_lib.KubernetesEmulator, api: ApiClient,
                                discovery: Factory) -> None:
    changes: list[int] = []
    found = await started(discovery(on_change=lambda d: changes.append(len(d.pods()))))
    assert found.pods() == [] and found.counts() == PodCounts(0, 0, 0, 0)
    assert found.last_error is None
    core = CoreV1Api(api)

    await core.create_namespaced_pod(NS, pod("llama-a", node=None, phase="Pending", ip=None))
    await wait_until(lambda: names(found) == ["llama-a"])
    assert found.counts() == PodCounts(ready=0, starting=0, pending=1, terminating=0)
    assert found.ready_endpoints() == []

    # Bound to a node, PodScheduled still False: pending yet; then scheduled, pulling: starting.
    await core.patch_namespaced_pod("llama-a", NS, {"spec": {"nodeName": "node-1"}})
    await wait_until(lambda: found.pods()[0].node == "node-1")
    assert found.counts().pending == 1
    await core.patch_namespaced_pod_status(
        "llama-a", NS, {"status": pod("llama-a", phase="Pending", ip=None)["status"]})
    await wait_until(lambda: found.counts().starting == 1)
    assert found.counts() == PodCounts(ready=0, starting=1, pending=0, terminating=0)

    await core.patch_namespaced_pod_status("llama-a", NS, pod("llama-a", ready=True))
    await wait_until(lambda: found.counts().ready == 1)
    assert found.pods() == [PodInfo(
        name="llama-a", namespace=NS, ip="127.0.0.11", phase="Running", ready=True,
        created_s=epoch(CREATED), started_s=epoch(READY_AT), node="node-1", deleting=False,
        scheduled=True)]
    assert found.ready_endpoints() == [("llama-a", "http://127.0.0.11:8000/metrics")]

    # A pod held by a finalizer: DELETE marks it (MODIFIED with deletionTimestamp), and it
    # goes (DELETED) when the finalizer is removed.
    await core.create_namespaced_pod(
        NS, pod("llama-b", ready=True, ip="127.0.0.12", finalizers=["example.com/hold"]))
    await wait_until(lambda: found.counts().ready == 2)
    await core.delete_namespaced_pod("llama-b", NS)
    await wait_until(lambda: found.counts().terminating == 1)
    assert found.counts() == PodCounts(ready=1, starting=0, pending=0, terminating=1)
    assert [p.name for p in found.pods() if p.deleting] == ["llama-b"]
    assert found.ready_endpoints() == [("llama-a", "http://127.0.0.11:8000/metrics")]

    await core.patch_namespaced_pod("llama-b", NS, {"metadata": {"finalizers": []}})
    await wait_until(lambda: names(found) == ["llama-a"])
    await core.delete_namespaced_pod("llama-a", NS)
    await wait_until(lambda: found.pods() == [])

    assert changes == [1, 1, 1, 1, 2, 2, 1, 0]
    assert len(requests(kmock, "list")) == 1  # all of it through one watch
    assert found.last_error is None


async def test_first_list_sets_synced_and_fills_the_cache(
        kmock: kmock_lib.KubernetesEmulator, discovery: Factory) -> None:
    kmock.objects[PODS, NS, "llama-b"] = pod("llama-b", ready=True, ip="127.0.0.12")
    kmock.objects[PODS, NS, "llama-a"] = pod("llama-a", ready=True)
    found = discovery()
    assert not found.synced.is_set() and found.pods() == []
    await started(found)
    assert names(found) == ["llama-a", "llama-b"]
    assert found.ready_endpoints() == [("llama-a", "http://127.0.0.11:8000/metrics"),
                                       ("llama-b", "http://127.0.0.12:8000/metrics")]
    (listed,) = requests(kmock, "list")
    assert listed.params["labelSelector"] == "app=llama"


# -- selectors and scale --------------------------------------------------------------------


async def test_deployment_selector_is_read_from_the_object(
        kmock: kmock_lib.KubernetesEmulator, discovery: Factory) -> None:
    kmock.objects[DEPLOYMENTS, NS, "llama"] = {"spec": {"selector": {
        "matchLabels": {"app": "llama", "model": "8b"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["gpu", "cpu"]},
                             {"key": "canary", "operator": "DoesNotExist"}]}}}
    kmock.objects[PODS, NS, "llama-a"] = pod("llama-a", ready=True)
    target = WorkloadTarget(namespace=NS, kind="Deployment", name="llama", selector=None,
                            port=9000, path="/vllm/metrics")
    found = await started(discovery(target))

    expected = "app=llama,model=8b,tier in (gpu,cpu),!canary"
    assert found.selector == expected
    assert found.ready_endpoints() == [("llama-a", "http://127.0.0.11:9000/vllm/metrics")]
    await wait_until(lambda: len(requests(kmock, "watch")) == 1)
    assert [r.params["labelSelector"] for r in kmock["list", PODS] | kmock["watch", PODS]] == [
        expected, expected]
    assert len(list(kmock["get", DEPLOYMENTS])) == 1


async def test_unsupported_selector_operator_is_named_and_retried(
        kmock: kmock_lib.KubernetesEmulator, discovery: Factory, sleep: RecordingSleep) -> None:
    kmock.objects[DEPLOYMENTS, NS, "llama"] = {"spec": {"selector": {
        "matchLabels": {"app": "llama"},
        "matchExpressions": [{"key": "gpus", "operator": "Gt", "values": ["1"]}]}}}
    found = discovery(WorkloadTarget(namespace=NS, kind="Deployment", name="llama",
                                     selector=None))
    await found.start()
    await wait_until(lambda: len(sleep.delays) >= 2)
    assert found.last_error == (
        "Deployment llm/llama: spec.selector.matchExpressions[0] has operator 'Gt' (key "
        "'gpus'); supported: In, NotIn, Exists, DoesNotExist")
    assert not found.synced.is_set()
    assert requests(kmock, "list") == []


async def test_replicas_from_the_scale_subresource(
        kmock: kmock_lib.KubernetesEmulator, discovery: Factory) -> None:
    scale = {"apiVersion": "autoscaling/v1", "kind": "Scale",
             "metadata": {"name": "llama", "namespace": NS},
             "spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=llama"}}
    kmock["get", DEPLOYMENTS, kmock.name("llama"), kmock.subresource("scale")] << scale
    # A StatefulSet scaled to zero: the API omits replicas=0 on the wire.
    kmock["get", STATEFULSETS, kmock.name("db"), kmock.subresource("scale")] << {
        "kind": "Scale", "spec": {}, "status": {"replicas": 0}}
    deployment = discovery(WorkloadTarget(NS, "Deployment", "llama", None))
    stateful_set = discovery(WorkloadTarget(NS, "StatefulSet", "db", None))
    assert await deployment.replicas() == 3
    assert await stateful_set.replicas() == 0
    assert await discovery(SELECTOR).replicas() is None
    (asked,) = kmock["get", DEPLOYMENTS]
    assert asked.url.path == "/apis/apps/v1/namespaces/llm/deployments/llama/scale"

    missing = discovery(WorkloadTarget(NS, "Deployment", "gone", None))
    kmock["get", DEPLOYMENTS, kmock.name("gone")] << 404 << status(
        404, "NotFound", 'deployments.apps "gone" not found')
    with pytest.raises(DiscoveryError) as failure:
        await missing.replicas()
    assert failure.value.status == 404
    assert str(failure.value) == (
        "GET Deployment llm/gone/scale returned HTTP 404 Not Found: deployments.apps \"gone\" "
        "not found; do the namespace and the workload exist?")


# -- watch expiry and reconnects ------------------------------------------------------------


async def test_watch_410_relists_at_once_and_drops_pods_deleted_in_the_gap(
        kmock: kmock_lib.KubernetesEmulator, api: ApiClient, discovery: Factory,
        sleep: RecordingSleep) -> None:
    kmock.objects[PODS, NS, "llama-a"] = pod("llama-a", ready=True)
    kmock.objects[PODS, NS, "llama-b"] = pod("llama-b", ready=True, ip="127.0.0.12")
    kmock["watch", PODS][:1] << (b"", ...)  # the first watch: a live stream fed below
    found = await started(discovery())
    await wait_until(lambda: len(requests(kmock, "watch")) == 1)

    await CoreV1Api(api).delete_namespaced_pod("llama-b", NS)  # the first watch never says so
    await asyncio.sleep(0.05)
    assert names(found) == ["llama-a", "llama-b"]

    kmock[...] << {"type": "ERROR", "object": status(
        410, "Expired", "too old resource version: 100 (200)")}
    await wait_until(lambda: names(found) == ["llama-a"])
    assert sleep.delays == []
    assert len(requests(kmock, "list")) == 2
    await wait_until(lambda: len(requests(kmock, "watch")) == 2)
    assert found.last_error is None


async def test_http_410_on_the_watch_relists_at_once_but_a_second_one_backs_off(
        kmock: kmock_lib.KubernetesEmulator, discovery: Factory, sleep: RecordingSleep) -> None:
    kmock.objects[PODS, NS, "llama-a"] = pod("llama-a", ready=True)
    kmock["watch", PODS][:2] << 410 << status(410, "Gone", "too old resource version")
    found = await started(discovery())
    await wait_until(lambda: len(requests(kmock, "watch")) == 3)
    assert len(requests(kmock, "list")) == 3
    assert sleep.delays == [0.5]  # the second 410 with no event in between
    await wait_until(lambda: found.last_error is None)
    assert names(found) == ["llama-a"]


async def test_bookmarks_move_the_resource_version_and_a_closed_watch_resumes_from_it(
        kmock: kmock_lib.KubernetesEmulator, discovery: Factory, sleep: RecordingSleep) -> None:
    kmock["watch", PODS][:1] << (b"", ...)
    found = await started(discovery())
    await wait_until(lambda: len(requests(kmock, "watch")) == 1)
    assert found.resource_version == "..."  # what kmock's list says

    # The server ends the watch after a bookmark (as at its timeoutSeconds): no relist.
    kmock[...] << {"type": "BOOKMARK", "object": {"kind": "Pod",
                                                  "metadata": {"resourceVersion": "42"}}}
    await wait_until(lambda: len(requests(kmock, "watch")) == 2)
    first, second = requests(kmock, "watch")
    assert first.params["resourceVersion"] == "..."
    assert second.params["resourceVersion"] == "42"
    assert first.params["allowWatchBookmarks"] == "true"
    assert first.params["timeoutSeconds"] == "300"
    assert len(requests(kmock, "list")) == 1 and sleep.delays == []


async def test_dropped_watch_connection_backs_off_and_relists(
        kmock: kmock_lib.KubernetesEmulator, api: ApiClient, discovery: Factory,
        sleep: RecordingSleep, caplog: pytest.LogCaptureFixture) -> None:
    kmock.objects[PODS, NS, "llama-a"] = pod("llama-a", ready=True)
    kmock.objects[PODS, NS, "llama-b"] = pod("llama-b", ready=True, ip="127.0.0.12")
    streaming, cut = asyncio.Event(), asyncio.Event()

    async def first_watch(request: kmock_lib.Request) -> AsyncIterator[bytes]:
        """Streams nothing until told, then drops the connection (no clean end). Being our
        own, it says when it streams: a fed item would reach only a stream already open."""
        yield b""
        streaming.set()
        await cut.wait()
        cut_connection(request)

    kmock["watch", PODS][:1] << first_watch
    found = await started(discovery())
    async with asyncio.timeout(5):  # a guard, not a timing claim
        await streaming.wait()
    await CoreV1Api(api).delete_namespaced_pod("llama-b", NS)

    recovered = LogEvent(LOGGER, "recovered")
    with caplog.at_level(logging.INFO, logger=LOGGER), recovered:
        cut.set()
        # The relist shows the pods first; "recovered" is logged once the watch runs again.
        async with asyncio.timeout(5):
            await recovered.wait()
    assert names(found) == ["llama-a"]
    assert sleep.delays == [0.5]
    assert len(requests(kmock, "list")) == 2
    assert found.last_error is None
    messages = [r.getMessage() for r in ours(caplog)]
    assert messages[0].startswith(
        "pod discovery for pods llm/app=llama: WATCH pods in llm (app=llama) failed: "
        "ClientPayloadError: Response payload is not completed")
    assert messages[1:] == ["pod discovery for pods llm/app=llama recovered: watching 1 pods"]


class LogEvent(logging.Handler):
    """An event set when ``logger`` logs a record containing ``text`` (while in a ``with``)."""

    def __init__(self, logger: str, text: str) -> None:
        super().__init__(logging.INFO)
        self.logger, self.text, self.event = logging.getLogger(logger), text, asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()

    async def wait(self) -> None:
        await self.event.wait()

    def __enter__(self) -> LogEvent:
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)


async def test_watch_error_event_and_short_watches_back_off(
        kmock: kmock_lib.KubernetesEmulator, discovery: Factory, sleep: RecordingSleep) -> None:
    kmock.objects[PODS, NS, "llama-a"] = pod("llama-a", ready=True)
    kmock["watch", PODS][:1] << ({"type": "ERROR", "object": status(
        500, "InternalError", "etcdserver: leader changed")},)
    kmock["watch", PODS][1:3] << (b"",)  # closed at once, twice, without an event
    found = await started(discovery())
    await wait_until(lambda: len(requests(kmock, "watch")) == 4)
    assert sleep.delays == [0.5, 1.0, 2.0]
    assert len(requests(kmock, "list")) == 4
    assert names(found) == ["llama-a"]


def ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Only discovery's own records (other libraries may log under load)."""
    return [r for r in caplog.records if r.name == LOGGER]


async def test_throttled_and_failing_lists_back_off_and_recover(
        kmock: kmock_lib.KubernetesEmulator, discovery: Factory, sleep: RecordingSleep,
        caplog: pytest.LogCaptureFixture) -> None:
    kmock.objects[PODS, NS, "llama-a"] = pod("llama-a", ready=True)
    kmock["list", PODS][:1] << 429 << {"Retry-After": "3"} << status(
        429, "TooManyRequests", "too many requests, please try again later")
    kmock["list", PODS][1:3] << 500 << status(500, "InternalError", "etcd timeout")
    found = discovery()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        await started(found)
        await wait_until(lambda: len(ours(caplog)) == 3)  # the recovery: a watch event
    assert sleep.delays == [3.0, 1.0, 2.0]  # Retry-After beats the first step
    assert names(found) == ["llama-a"] and found.last_error is None
    assert [r.getMessage() for r in ours(caplog)] == [
        "pod discovery for pods llm/app=llama: LIST pods in llm (app=llama) returned HTTP 429 "
        "Too Many Requests: too many requests, please try again later; the API server is "
        "throttling this client (retrying with back-off)",
        "pod discovery for pods llm/app=llama: LIST pods in llm (app=llama) returned HTTP 500 "
        "Internal Server Error: etcd timeout; is the API server healthy? (retrying with "
        "back-off)",  # once, not once per retry
        "pod discovery for pods llm/app=llama recovered: watching 1 pods"]


async def test_a_watch_refused_every_time_is_logged_once(
        kmock: kmock_lib.KubernetesEmulator, discovery: Factory,
        caplog: pytest.LogCaptureFixture) -> None:
    refused = ('pods is forbidden: User "system:serviceaccount:keda:scaler" cannot watch '
               'resource "pods" in API group "" in the namespace "llm"')
    kmock["watch", PODS] << 403 << status(403, "Forbidden", refused)
    sleep = RecordingSleep(limit=4)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        found = await started(discovery(sleep=sleep))
        await wait_until(lambda: len(sleep.delays) == 4)
    assert sleep.delays == [0.5, 1.0, 2.0, 5.0]  # a good LIST does not restart the back-off
    assert len(requests(kmock, "list")) == 4
    assert found.last_error == (
        f"WATCH pods in llm (app=llama) returned HTTP 403 Forbidden: {refused}; does the "
        "scaler's ServiceAccount have RBAC to get, list and watch pods and to get deployments, "
        "statefulsets and their scale subresource in this namespace?")
    assert [r.getMessage() for r in ours(caplog)] == [
        f"pod discovery for pods llm/app=llama: {found.last_error} (retrying with back-off)"]


async def test_list_pages_are_followed(kmock: kmock_lib.KubernetesEmulator,
                                       discovery: Factory) -> None:
    kmock["list", PODS][:1] << {"kind": "PodList", "items": [pod("llama-a", ready=True)],
                                "metadata": {"continue": "page-2", "resourceVersion": "7"}}
    kmock["list", PODS][1:2] << {"kind": "PodList", "metadata": {"resourceVersion": "7"},
                                 "items": [pod("llama-b", ready=True, ip="127.0.0.12")]}
    found = await started(discovery(page_size=1))
    assert names(found) == ["llama-a", "llama-b"]
    first, second = requests(kmock, "list")
    assert first.params["limit"] == "1" and "continue" not in first.params
    assert second.params["continue"] == "page-2"
    await wait_until(lambda: len(requests(kmock, "watch")) == 1)
    assert requests(kmock, "watch")[0].params["resourceVersion"] == "7"


async def test_unreachable_api_server_backs_off_through_the_steps(
        discovery: Factory, sleep: RecordingSleep) -> None:
    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    host = f"http://127.0.0.1:{port}"
    async with ApiClient(Configuration(host=host)) as nowhere:
        found = discovery(api=nowhere)
        await found.start()
        await wait_until(lambda: len(sleep.delays) >= 6)
        await found.stop()
    assert sleep.delays[:6] == [0.5, 1.0, 2.0, 5.0, 5.0, 5.0]  # the last step repeats
    assert not found.synced.is_set()
    error = found.last_error or ""
    assert error.startswith("LIST pods in llm (app=llama) failed: ClientConnectorError: ")
    assert error.endswith(f"; is the API server at {host} reachable?")


async def test_bad_backoff_is_refused(api: ApiClient) -> None:
    with pytest.raises(ValueError, match=r"^backoff_s must have at least one step, got \(\)$"):
        PodDiscovery(api, SELECTOR, backoff_s=())
    with pytest.raises(ValueError, match=r"^backoff_s steps must be finite seconds >= 0, "):
        PodDiscovery(api, SELECTOR, backoff_s=(1, -2))
