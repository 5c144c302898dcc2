"""Live tuning: metadata defaults from the config, reloads applied or rejected whole."""

from __future__ import annotations

import logging

import pytest

from scaler.config.load import parse_config
from scaler.service.config_watch import ConfigWatcher
from scaler.service.service import ScalerService
from tests.clock import ManualClock
from tests.conftest import make_config

URL = "http://127.0.0.1:9/metrics"

GOOD = """
scrape: {interval_s: 5, timeout_s: 1.5, rate_window_s: 120}
tuning:
  defaults: {targetKvCacheUsage: 0.5, headroom: 1.2}
  namespaces:
    prod: {headroom: 1.5}
  workloads:
    prod/llama: {podStartupSeconds: 420}
"""


def test_precedence_trigger_then_workload_then_namespace_then_defaults():
    tuning = parse_config(GOOD).tuning
    merged = tuning.metadata_for("prod", "llama", {"headroom": "1.1", "endpoints": URL})
    assert merged["headroom"] == "1.1"  # the ScaledObject's own metadata wins
    assert merged["podStartupSeconds"] == "420"
    assert merged["targetKvCacheUsage"] == "0.5"
    assert tuning.metadata_for("prod", "other", {})["headroom"] == "1.5"
    assert tuning.metadata_for("dev", "x", {})["headroom"] == "1.2"


@pytest.mark.parametrize(("text", "problem"), [
    ("tuning: {defaults: {headroom: lots}}", "tuning.defaults.headroom: 'lots' is not a factor"),
    ("tuning: {defaults: {targetQueue: 5}}", "tuning.defaults.targetQueue: not a trigger "
                                             "metadata key"),
    ("tuning: {workloads: {llama: {headroom: 1}}}", "tuning.workloads.llama: must be written "
                                                    "as namespace/name"),
    ("tuning: {namespaces: [a]}", "tuning.namespaces: must be a mapping"),
    ("tuning: {overrides: {}}", "tuning.overrides: unknown key"),
])
def test_bad_tuning_names_the_key(text, problem):
    from scaler.config.load import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert any(problem in p for p in info.value.problems), info.value.problems


async def test_a_good_reload_applies_without_resetting_what_was_learnt(service, tmp_path):
    path = tmp_path / "scaler.yaml"
    path.write_text("scrape: {interval_s: 5}\n")
    watcher = ConfigWatcher(path, service)
    assert watcher.check() == "applied"
    workload = service.resolve("prod", "llama", {"endpoints": URL})
    planner = workload.planner
    assert planner is not None and planner.settings.plan.headroom == 1.0
    path.write_text(GOOD)
    assert watcher.check() == "applied"
    assert watcher.check() == "unchanged"
    same = service.resolve("prod", "llama", {"endpoints": URL})  # KEDA's next poll
    assert same is workload
    assert workload.planner is not None
    assert workload.planner.forecaster is planner.forecaster  # learnt state kept
    assert workload.planner.settings.plan.headroom == 1.5
    assert workload.planner.settings.plan.pod_startup_s == 420
    assert workload.spec.targets.target_kv_cache_usage == 0.5
    assert service.config.scrape.rate_window_s == 120
    assert all(p.window.window_s == 120 for p in workload.pods.values())
    assert service.telemetry.registry.get_sample_value(
        "scaler_config_reloads_total", {"result": "applied"}) == 2


async def test_a_bad_reload_is_rejected_whole_and_said_once(service, tmp_path, caplog):
    path = tmp_path / "scaler.yaml"
    path.write_text(GOOD)
    watcher = ConfigWatcher(path, service)
    watcher.check()
    caplog.set_level(logging.INFO, logger="scaler.config")
    path.write_text("scrape: {interval_s: 1}\ntuning: {defaults: {headroom: huge}}\n")
    assert watcher.check() == "rejected"
    assert watcher.check() == "unchanged"  # the same bad text is not reported again
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("tuning.defaults.headroom" in e for e in errors)
    assert sum("keeping the last good config" in e for e in errors) == 1
    assert service.config.scrape.interval_s == 5  # nothing of the bad file applied
    assert service.config.tuning.defaults["headroom"] == "1.2"
    assert service.telemetry.registry.get_sample_value(
        "scaler_config_reloads_total", {"result": "rejected"}) == 1
    path.unlink()
    assert watcher.check() == "rejected"
    assert service.config.tuning.defaults["headroom"] == "1.2"


async def test_listening_settings_are_flagged_for_a_restart(service, tmp_path, caplog):
    path = tmp_path / "scaler.yaml"
    path.write_text("server: {grpc_port: 9999}\n")
    caplog.set_level(logging.WARNING, logger="scaler.config")
    assert ConfigWatcher(path, service).check() == "applied"
    assert any("'server' changed; it takes effect at the next restart" in r.getMessage()
               for r in caplog.records)


async def test_a_rejected_config_is_an_event_on_its_configmap(tmp_path, monkeypatch):
    import kmock
    from kubernetes_asyncio.client import ApiClient, Configuration

    from tests.conftest import wait_until
    from tests.kube_api import ApiServer

    async with (ApiServer() as server, kmock.Server(server),
                ApiClient(Configuration(host=str(server.url))) as api):
        svc = ScalerService(make_config(), clock=ManualClock(), background=False,
                            kube_api=api)
        await svc.start()
        try:
            monkeypatch.setenv("SCALER_CONFIGMAP", "keda/scaler-config")
            path = tmp_path / "scaler.yaml"
            path.write_text("scrape: {interval_s: nope}\n")
            assert ConfigWatcher(path, svc).check() == "rejected"
            await wait_until(lambda: any(r.method == "POST" for r in server))
            [event] = [r for r in server if r.method == "POST"]
            assert event.url.path == "/api/v1/namespaces/keda/events"
            assert event.data["type"] == "Warning"
            assert event.data["reason"] == "ConfigRejected"
            assert event.data["involvedObject"]["name"] == "scaler-config"
            assert "scrape.interval_s: 'nope' is not a number" in event.data["message"]
        finally:
            await svc.stop()


@pytest.mark.parametrize(("text", "section"), [
    ("gpu: {selector: app=nvidia-dcgm-exporter}\n", "gpu"),
    ("node_pools: {pools: {h100: {actuator: dry-run}}}\n", "node_pools"),
])
async def test_sections_read_at_start_are_flagged_for_a_restart(service, tmp_path, caplog,
                                                                text, section):
    path = tmp_path / "scaler.yaml"
    path.write_text(text)
    caplog.set_level(logging.WARNING, logger="scaler.config")
    assert ConfigWatcher(path, service).check() == "applied"
    assert any(f"'{section}' changed; it takes effect at the next restart" in r.getMessage()
               for r in caplog.records)


async def test_the_file_the_service_started_from_is_not_a_reload_and_keeps_port_overrides(
        tmp_path, caplog):
    import dataclasses

    path = tmp_path / "scaler.yaml"
    path.write_text("server: {grpc_port: 9999}\nscrape: {interval_s: 5}\n")
    started = parse_config(path.read_text())
    overridden = dataclasses.replace(started, server=dataclasses.replace(started.server,
                                                                         grpc_port=0))
    svc = ScalerService(overridden, clock=ManualClock(), background=False)
    watcher = ConfigWatcher(path, svc)
    watcher.started_from(path.read_text())
    caplog.set_level(logging.WARNING, logger="scaler.config")
    assert watcher.check() == "unchanged"
    assert svc.telemetry.registry.get_sample_value(
        "scaler_config_reloads_total", {"result": "applied"}) is None
    path.write_text("server: {grpc_port: 9999}\nscrape: {interval_s: 7}\n")
    assert watcher.check() == "applied"
    assert svc.config.scrape.interval_s == 7 and svc.config.server.grpc_port == 0
    assert not any("next restart" in r.getMessage() for r in caplog.records)


async def test_a_change_made_while_the_service_starts_is_applied(tmp_path):
    """The watcher starts from the text the config was parsed from, not a second read of the
    file: an edit landing between the two is a change like any other."""
    from scaler.commands.serve import start_app
    from scaler.config.load import read_config
    from tests.conftest import wait_until

    path = tmp_path / "scaler.yaml"
    path.write_text("scrape: {interval_s: 5}\n")
    config, text = read_config(path)
    config = parse_config(text.replace("scrape:", "server: {host: 127.0.0.1, grpc_port: 0, "
                                                 "http_port: 0}\nscrape:"))
    path.write_text("scrape: {interval_s: 7}\n")  # the edit, after the read
    app = await start_app(config, ScalerService(config, clock=ManualClock(), background=False),
                          config_path=path, config_text=text)
    try:
        await wait_until(lambda: app.service.config.scrape.interval_s == 7)
    finally:
        await app.stop()
