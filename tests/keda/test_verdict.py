"""The service's outcomes as KEDA verdicts: how long an OK holds, UNAVAILABLE, INVALID."""

from __future__ import annotations

import pytest

from scaler.keda.metadata import MetadataError
from scaler.keda.servicer import INVALID, OK, UNAVAILABLE
from scaler.keda.verdict import invalid, verdict_of
from scaler.sim.emulation.engine_state import EngineState


async def test_a_workload_without_a_scrape_is_unavailable_until_the_next_decision(service,
                                                                                 pods):
    pod = await pods()
    workload = service.resolve("ns", "so", {"endpoints": pod.url})
    verdict, fresh_s = verdict_of(service, workload)
    assert verdict.code == UNAVAILABLE
    assert verdict.metric_name == "desired-replicas"  # GetMetricSpec can still answer
    assert "no scrape has completed yet" in verdict.message
    assert fresh_s == 0.0


async def test_a_decision_holds_while_its_data_is_fresh(service, pods):
    pod = await pods()
    pod.engines = [EngineState(waiting=12, running=40)]
    workload = service.resolve("ns", "so", {"endpoints": pod.url, "policy": "reactive"})
    await service.scrape(workload)
    service.clock.advance(4)
    verdict, fresh_s = verdict_of(service, workload)
    assert (verdict.code, verdict.desired_replicas, verdict.active) == (OK, 3, True)
    assert fresh_s == pytest.approx(service.config.scrape.stale_after_s - 4)
    service.clock.advance(service.config.scrape.stale_after_s)
    assert verdict_of(service, workload)[0].code == UNAVAILABLE


def test_bad_metadata_names_no_metric_and_every_bad_key() -> None:
    verdict = invalid(MetadataError(["key 'a' is wrong", "key 'b' is wrong"]))
    assert (verdict.code, verdict.metric_name) == (INVALID, "")
    assert "key 'a' is wrong" in verdict.message and "key 'b' is wrong" in verdict.message
