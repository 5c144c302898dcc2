"""A workload's metadata changed by a later call is said once, by key, and counted.

The latest caller's metadata replaces the spec (a ScaledObject edited in place must win), so
a change is never silent: one log line naming the keys that changed (never their values:
URLs may carry credentials) and ``scaler_workload_spec_changes_total``, whose series goes
when the workload does.
"""

from __future__ import annotations

import logging

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from scaler.keda.proto import externalscaler_pb2 as pb

NS, NAME = "llm", "llama-8b"
SECRET_URL = "http://scaler:hunter2-s3cret@127.0.0.2:9/metrics"
OTHER_URL = "http://127.0.0.3:9/metrics"
COUNTER = "scaler_workload_spec_changes_total"


def ref(**metadata: str) -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name=NAME, namespace=NS, scalerMetadata=metadata)


def change_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "scaler.service" and "metadata changed" in r.getMessage()]


async def counted(app) -> float | None:
    """The counter as /metrics serves it (None: no series)."""
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{app.http_port}/metrics") as resp:
        page = await resp.text()
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name == COUNTER and sample.labels == {"namespace": NS,
                                                            "scaledobject": NAME}:
                return sample.value
    return None


async def test_a_later_grpc_call_changing_metadata_is_logged_by_key_and_counted(
        app, keda, caplog):
    caplog.set_level(logging.INFO, logger="scaler.service")
    first = {"endpoints": SECRET_URL, "minReplicas": "1", "sloTtftSeconds": "2"}
    await keda.GetMetricSpec(ref(**first))
    await keda.GetMetricSpec(ref(**first))
    assert change_lines(caplog) == []  # registering is not a change, nor the same again
    assert await counted(app) is None

    second = {"endpoints": OTHER_URL, "minReplicas": "40", "sloTtftSeconds": "2"}
    await keda.GetMetricSpec(ref(**second))
    await keda.GetMetricSpec(ref(**second))
    [line] = change_lines(caplog)
    assert f"{NS}/{NAME}" in line
    assert "endpoints" in line and "minReplicas" in line
    assert "sloTtftSeconds" not in line  # unchanged
    assert "hunter2" not in line and "127.0.0.3" not in line and "40" not in line
    assert await counted(app) == 1

    await keda.GetMetricSpec(ref(**first))  # and back: a change again
    assert len(change_lines(caplog)) == 2
    assert await counted(app) == 2


def test_a_dropped_workload_takes_its_series_along(service):
    counter = service.telemetry.registry.get_sample_value
    labels = {"namespace": NS, "scaledobject": NAME}
    service.resolve(NS, NAME, {"endpoints": SECRET_URL})
    workload = service.resolve(NS, NAME, {"endpoints": OTHER_URL})
    other_metric = service.resolve(NS, NAME, {"endpoints": OTHER_URL, "metricName": "kv"})
    service.resolve(NS, NAME, {"endpoints": SECRET_URL, "metricName": "kv"})
    assert counter(COUNTER, labels) == 2

    service.drop(workload)  # the ScaledObject's other trigger is still asked about
    assert counter(COUNTER, labels) == 2
    service.drop(service.registry.get(other_metric.key))
    assert counter(COUNTER, labels) is None
