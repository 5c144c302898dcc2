"""Every Grafana panel query and every alert expression, run against live data.

The real service (``scaler serve`` in its own process) scrapes emulated vLLM pods and plans
for a dry-run node pool; a real Prometheus (Debian package) scrapes the service and the pods
every second, as a ServiceMonitor and a PodMonitor would (honor_labels on the scaler; the pods
carry ``namespace`` and ``pod`` target labels), and evaluates the alert rules itself. Then each
dashboard target, with its template variables filled in, and each alert expression goes
through Prometheus' HTTP API: it must parse and evaluate, and the core panels must show data.
What cannot have data here (kube-state-metrics, dcgm-exporter, a Lease, forecaster steps
five minutes apart) is listed in ``ALLOWED_EMPTY`` with the reason.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from scaler.keda.proto import externalscaler_pb2 as pb
from scaler.keda.proto import externalscaler_pb2_grpc as pb_grpc
from scaler.sim.emulation.engine_state import EngineState
from scaler.sim.emulation.pod_server import EmulatedVllmPod

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "llm-predictive-scaler.json"
RULE = ROOT / "deploy" / "base" / "prometheusrule.yaml"

NS, NAME, POOL = "llm", "llama-8b", "preview"
API_TOKEN = "dashboard-test-token"  # server.http_api_token_file: the metrics-api route on
JOB = "llm-predictive-scaler"  # the job label the ServiceMonitor gives the scaler
WORKLOAD_FILTER = 'namespace=~"$namespace", scaledobject=~"$workload"'
POD_FILTER = 'namespace=~"$namespace", pod=~"$workload-.*"'

# Template variables as Grafana would fill them for the test's workload.
VARIABLES = {
    "datasource": "prometheus", "job": JOB, "namespace": NS, "workload": NAME, "pool": POOL,
    "slo_ttft": "2", "__rate_interval": "5s", "__interval": "2s", "__range": "30s",
    "__range_s": "30", "__interval_ms": "2000",
}

# A target whose expression contains one of these may return nothing here.
ALLOWED_EMPTY = {
    "kube_deployment_status_replicas_ready": "kube-state-metrics runs in a cluster only",
    "DCGM_FI_": "no dcgm-exporter (no GPU) here",
    'signal="gpu_': "the test workload has no gpuEndpoints",
    "scaler_leader": "exported only when a pool acts, which needs a Lease (a Kubernetes API)",
    "scaler_front_restarts_total": "exported only with server.front_process",
    "scaler_workload_spec_changes_total": "no workload's metadata changes in this run",
    'state="ready"': "a dry-run pool reports no ready nodes",
    "scaler_workload_forecast_coverage": "scored once per 5-minute forecaster step",
    "scaler_workload_forecast_abs_error": "scored once per 5-minute forecaster step",
    "scaler_workload_forecast_requests_per_second":
        "absent (not 0) until the forecaster has seen one 5-minute step of demand",
}

DATA_DEADLINE_S = 30.0

needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="needs the Debian prometheus package (.ci/run installs it)")


@dataclass(frozen=True)
class Target:
    panel: str
    ref: str
    expr: str

    def __str__(self) -> str:
        return f"panel {self.panel!r} target {self.ref}: {self.expr}"


def dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD.read_text())
    assert isinstance(loaded, dict)
    return loaded


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def dashboard_targets() -> list[Target]:
    return [Target(panel["title"], target["refId"], target["expr"])
            for panel in all_panels(dashboard()["panels"])
            for target in panel.get("targets", [])]


def alert_exprs() -> dict[str, str]:
    spec = yaml.safe_load(RULE.read_text())["spec"]
    return {rule["alert"]: rule["expr"] for group in spec["groups"] for rule in group["rules"]}


def substitute(text: str) -> str:
    """Fill ``$name``, ``${name}`` and ``${name:format}`` as Grafana would."""
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in VARIABLES:
            raise AssertionError(f"unknown template variable ${name} in: {text}")
        return VARIABLES[name]
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, text)


def allowed_empty(expr: str) -> str | None:
    return next((why for key, why in ALLOWED_EMPTY.items() if key in expr), None)


# -- the dashboard's shape (no Prometheus needed) ------------------------------------------


def test_the_dashboard_is_importable_and_uses_its_variables() -> None:
    board = dashboard()
    assert board["uid"] == "llm-predictive-scaler"
    assert 36 <= board["schemaVersion"] <= 41
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name, label in (("namespace", "namespace"), ("workload", "scaledobject")):
        assert variables[name]["type"] == "query"
        assert re.fullmatch(rf"label_values\(scaler_workload_desired_replicas(\{{.*\}})?, "
                            rf"{label}\)", variables[name]["definition"]), name
    panels = [p for p in all_panels(board["panels"]) if p["type"] != "row"]
    ids = [p["id"] for p in all_panels(board["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, (
            panel["title"])
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"{panel['title']}: wider than the grid"
        assert panel["targets"], f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_every_per_workload_selector_filters_on_the_workload() -> None:
    for target in dashboard_targets():
        for selector in re.finditer(r"(scaler_workload_\w+|vllm:\w+)(\{[^}]*\})?", target.expr):
            labels = selector.group(2) or ""
            wanted = POD_FILTER if selector.group(1).startswith("vllm:") else WORKLOAD_FILTER
            assert wanted in labels, f"{target}: {selector.group(1)} must select {{{wanted}}}"


# -- live: the service, emulated pods and Prometheus ----------------------------------------


class BadLinePod(EmulatedVllmPod):
    """A pod whose page has one malformed line (counted, skipped; the page is still used)."""

    def page(self) -> str:
        return super().page() + 'vllm:num_requests_waiting{engine="0",model_name="m" 3\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def drive(pods: list[EmulatedVllmPod]) -> None:
    """Steady traffic: requests finish, tokens flow, TTFTs land in the histogram."""
    rng = random.Random(7)
    while True:
        for pod in pods:
            for engine in pod.engines:
                engine.waiting = rng.randint(0, 8)
                engine.running = rng.randint(10, 30)
                engine.kv_cache_usage = rng.uniform(0.3, 0.7)
                engine.record_step(prompt_tokens=400, generation_tokens=30)
                ttft = rng.uniform(0.1, 1.5)
                engine.record_request(prompt_tokens=400, generation_tokens=150, queue_s=0.05,
                                      ttft_s=ttft, e2e_s=ttft + 3.0)
        await asyncio.sleep(0.05)


@asynccontextmanager
async def process(args: list[str], log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(*args, stdout=out, stderr=out)
        try:
            yield proc
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def wait_http_ok(http: aiohttp.ClientSession, url: str, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            async with http.get(url) as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} not ready in 20 s; log (tail):\n{tail(log)}")


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


class Prometheus:
    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url = http, url

    async def api(self, path: str, **params: str) -> Any:
        async with self.http.get(f"{self.url}/api/v1/{path}", params=params) as resp:
            body = await resp.json()
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    async def query(self, expr: str) -> list[Any]:
        data = await self.api("query", query=expr)
        result = data["result"]
        if data["resultType"] == "scalar":
            return [result]
        assert isinstance(result, list)
        return result


@dataclass
class Stack:
    prometheus: Prometheus
    scaler_http: str
    scaler_log: Path


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    prom_port, grpc_port, http_port = free_port(), free_port(), free_port()
    async with AsyncExitStack() as exit_stack:
        http = await exit_stack.enter_async_context(aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=10)))
        healthy = [EmulatedVllmPod([EngineState(), EngineState()], version="0.12"),
                   EmulatedVllmPod(version="0.8.3")]  # gpu_cache_usage_perc, no engine label
        bad_lines, failing = BadLinePod(), EmulatedVllmPod()
        for pod in (*healthy, bad_lines, failing):
            await exit_stack.enter_async_context(pod)
        failing.fault = "http_500"
        driver = asyncio.create_task(drive([*healthy, bad_lines]))
        exit_stack.callback(driver.cancel)

        url = f"http://127.0.0.1:{prom_port}"
        await start_prometheus(exit_stack, tmp_path, prom_port, http_port, healthy)
        await wait_http_ok(http, f"{url}/-/ready", tmp_path / "prometheus.log")

        token = tmp_path / "api-token"
        token.write_text(f"{API_TOKEN}\n")
        config = tmp_path / "scaler.yaml"
        config.write_text(scaler_config(url, token))
        log = tmp_path / "scaler.log"
        await exit_stack.enter_async_context(process(
            [sys.executable, "-m", "scaler", "serve", "--config", str(config),
             "--host", "127.0.0.1", "--grpc-port", str(grpc_port),
             "--http-port", str(http_port)], log))
        scaler_http = f"http://127.0.0.1:{http_port}"
        await wait_http_ok(http, f"{scaler_http}/readyz", log)

        endpoints = ",".join(f"{NAME}-{i}={pod.url}"
                             for i, pod in enumerate((*healthy, bad_lines, failing)))
        metadata = {"endpoints": endpoints, "nodePool": POOL, "targetTtftSeconds": "2"}
        await keda_polls(grpc_port, metadata)
        async with http.get(f"{scaler_http}/api/v1/namespaces/{NS}/scaledobjects/{NAME}",
                            params=metadata,
                            headers={"Authorization": f"Bearer {API_TOKEN}"}) as resp:
            assert resp.status == 200, await resp.text()
        reload = "workloads: {idle_timeout_s: 900}\n"
        config.write_text(scaler_config(url, token) + reload)
        yield Stack(Prometheus(http, url), scaler_http, log)


def scaler_config(prometheus_url: str, token_file: Path) -> str:
    history = ('sum(rate(vllm:request_success_total{namespace="{namespace}",'
               'pod=~"{scaledobject}-.*"}[5m]))')
    return yaml.safe_dump({
        "server": {"http_api_token_file": str(token_file)},
        "scrape": {"interval_s": 1, "stale_after_s": 5, "rate_window_s": 10},
        "prometheus": {"url": prometheus_url, "history_query": history},
        "node_pools": {"interval_s": 1, "pools": {POOL: {"actuator": "dry-run"}}},
    })


async def start_prometheus(exit_stack: AsyncExitStack, root: Path, port: int,
                           scaler_port: int, pods: list[EmulatedVllmPod]) -> None:
    rules = root / "alerts.rules.yaml"
    rules.write_text(yaml.safe_dump(yaml.safe_load(RULE.read_text())["spec"]))
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": JOB, "honor_labels": True,
             "static_configs": [{"targets": [f"127.0.0.1:{scaler_port}"]}]},
            {"job_name": "vllm", "static_configs": [
                {"targets": [f"{pod.host}:{pod.port}"],
                 "labels": {"namespace": NS, "pod": f"{NAME}-{i}"}}
                for i, pod in enumerate(pods)]},
        ],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    await exit_stack.enter_async_context(process(
        ["prometheus", f"--config.file={root / 'prometheus.yml'}",
         f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        root / "prometheus.log"))


async def keda_polls(grpc_port: int, metadata: dict[str, str]) -> None:
    """Register the workload as KEDA does and poll until the first decision is there."""
    ref = pb.ScaledObjectRef(name=NAME, namespace=NS, scalerMetadata=metadata)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        keda = pb_grpc.ExternalScalerStub(channel)  # type: ignore[no-untyped-call]
        spec = await keda.GetMetricSpec(ref)
        request = pb.GetMetricsRequest(scaledObjectRef=ref,
                                       metricName=spec.metricSpecs[0].metricName)
        async with asyncio.timeout(15):
            while True:
                try:
                    await keda.GetMetrics(request)
                    break
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
                    await asyncio.sleep(0.2)
        await keda.IsActive(ref)


async def empty_targets(prometheus: Prometheus, targets: list[Target]) -> list[Target]:
    """The targets that must show data and do not yet (a failing query raises)."""
    empty = []
    for target in targets:
        try:
            result = await prometheus.query(substitute(target.expr))
        except AssertionError as exc:
            raise AssertionError(f"{target}\n  Prometheus: {exc}") from None
        if not result and allowed_empty(target.expr) is None:
            empty.append(target)
    return empty


@needs_prometheus
async def test_every_panel_and_alert_query_runs_on_live_data(stack: Stack) -> None:
    prometheus = stack.prometheus
    targets = dashboard_targets()
    deadline = time.monotonic() + DATA_DEADLINE_S
    empty = await empty_targets(prometheus, targets)
    while empty and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        empty = await empty_targets(prometheus, targets)
    assert not empty, (
        f"no data after {DATA_DEADLINE_S:.0f} s for:\n  " + "\n  ".join(map(str, empty))
        + f"\nscaler log (tail):\n{tail(stack.scaler_log)}")

    for name, expr in alert_exprs().items():
        try:
            await prometheus.query(expr)
        except AssertionError as exc:
            raise AssertionError(f"alert {name}: {exc}") from None


@needs_prometheus
async def test_prometheus_evaluates_every_alert_rule_cleanly(stack: Stack) -> None:
    deadline = time.monotonic() + 15
    while True:
        groups = (await stack.prometheus.api("rules"))["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        if all(rule["health"] != "unknown" for rule in rules) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert {rule["name"] for rule in rules} == set(alert_exprs())
    bad = [f"{rule['name']}: {rule['health']} {rule.get('lastError', '')}" for rule in rules
           if rule["health"] != "ok"]
    assert not bad, "rules Prometheus could not evaluate:\n" + "\n".join(bad)


@needs_prometheus
async def test_variables_list_the_live_workload_and_every_metric_is_on_the_dashboard(
        stack: Stack) -> None:
    expected = {"job": JOB, "namespace": NS, "workload": NAME, "pool": POOL}
    variables = [v for v in dashboard()["templating"]["list"] if v["type"] == "query"]
    deadline = time.monotonic() + DATA_DEADLINE_S
    for variable in variables:
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["definition"])
        assert match, f"variable {variable['name']}: {variable['definition']}"
        selector, label = substitute(match.group(1)), match.group(2)
        while True:
            values = await stack.prometheus.api(f"label/{label}/values", **{"match[]": selector})
            if expected[variable["name"]] in values or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert expected[variable["name"]] in values, (
            f"variable {variable['name']} ({variable['definition']}) lists {values}")

    async with stack.prometheus.http.get(f"{stack.scaler_http}/metrics") as resp:
        page = await resp.text()
    families = {f.name for f in text_string_to_metric_families(page)
                if f.name.startswith("scaler_") and not f.name.endswith("_created")}
    shown = " ".join(t.expr for t in dashboard_targets())
    missing = sorted(name for name in families if name not in shown)
    assert not missing, f"metrics the service exports but the dashboard does not show: {missing}"
