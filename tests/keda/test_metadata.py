"""ScaledObject metadata parsing, table-driven as KEDA's scaler tests are."""

from __future__ import annotations

import pytest

from scaler.keda.metadata import MetadataError, over_tuning, parse_metadata
from scaler.model.specs import Endpoint

URL = "http://10.0.0.7:8000/metrics"


def test_defaults():
    spec = parse_metadata({"endpoints": URL})
    assert spec.endpoints == (Endpoint("10.0.0.7:8000", URL),)
    assert spec.targets.target_queue_per_replica == 5
    assert spec.targets.target_kv_cache_usage == 0.8
    assert spec.targets.tolerance == 0.1
    assert (spec.bounds.min_replicas, spec.bounds.max_replicas) == (0, 100)
    assert spec.metric_name == "desired-replicas"
    assert spec.server == "vllm"
    assert spec.model_name is None


def test_named_endpoints_and_spaces():
    spec = parse_metadata({"endpoints": f" vllm-0={URL} , http://10.0.0.8:8000/metrics "})
    assert [e.pod for e in spec.endpoints] == ["vllm-0", "10.0.0.8:8000"]


def test_urls_with_query_strings_are_not_taken_for_pod_names():
    spec = parse_metadata({"endpoints": "http://10.0.0.7:8000/metrics?a=b,p1=http://h/m?x=1"})
    assert [(e.pod, e.url) for e in spec.endpoints] == [
        ("10.0.0.7:8000", "http://10.0.0.7:8000/metrics?a=b"), ("p1", "http://h/m?x=1")]


def test_discovery_instead_of_endpoints():
    spec = parse_metadata({"deployment": "llama-8b", "metricsPort": "8080"})
    assert spec.endpoints == ()
    assert (spec.deployment, spec.metrics_port, spec.metrics_path) == ("llama-8b", 8080,
                                                                       "/metrics")
    assert parse_metadata({"labelSelector": "app=llama,tier in (gpu)"}).label_selector


def test_keda_own_keys_are_accepted():
    """KEDA 2.20 reads scalerAddress, enableTLS and unsafeSsl from the metadata it forwards."""
    parse_metadata({"endpoints": URL, "scalerAddress": "scaler:9090", "enableTLS": "true",
                    "unsafeSsl": "false"})


@pytest.mark.parametrize("key", ["caCert", "tlsClientCert", "tlsClientKey", "tlsCertFile"])
def test_tls_files_in_metadata_point_to_a_trigger_authentication(key):
    """KEDA reads its TLS files only from a TriggerAuthentication: in metadata they would be
    ignored, and the connection silently made without them."""
    with pytest.raises(MetadataError) as info:
        parse_metadata({"endpoints": URL, "scalerAddress": "scaler:9090", key: "x"})
    (problem,) = info.value.problems
    assert problem.startswith(f"scalerMetadata key '{key}' is ignored by KEDA in a trigger's "
                              "metadata")
    assert "TriggerAuthentication" in problem and "authenticationRef" in problem
    assert ("up to 2.16 only" in problem) == (key == "tlsCertFile")


def test_from_env_keys_are_read_as_the_key_they_name():
    """KEDA forwards ``xFromEnv`` with the environment variable's value already resolved
    (and leaves it out when unset), as its own scalers read it: as ``x``."""
    spec = parse_metadata({"endpointsFromEnv": URL, "maxReplicasFromEnv": "7"})
    assert spec.endpoints == (Endpoint("10.0.0.7:8000", URL),)
    assert spec.bounds.max_replicas == 7


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"endpointsFromEnv": "10.0.0.7:8000"},
         "scalerMetadata key 'endpointsFromEnv' (read as 'endpoints') has value '10.0.0.7:8000':"
         " expected comma-separated http(s) URLs"),
        ({"endpoints": URL, "endpointsFromEnv": URL},
         "scalerMetadata key 'endpointsFromEnv' repeats 'endpoints': give one"),
        ({"endpoints": URL, "targetFromEnv": "5"},
         "scalerMetadata key 'targetFromEnv' is not known"),
        ({"endpoints": URL, "scalerAddressFromEnv": "ADDR"},
         "scalerMetadata key 'scalerAddressFromEnv' is not known"),
    ],
)
def test_bad_from_env_keys_are_named_as_given(metadata, message):
    with pytest.raises(MetadataError) as info:
        parse_metadata(metadata)
    assert any(p.startswith(message) for p in info.value.problems), info.value.problems


def test_a_trigger_from_env_key_overrides_the_operator_tuning():
    merged = over_tuning({"maxReplicas": "4", "headroom": "1.2"}, {"maxReplicasFromEnv": "9"})
    assert merged == {"headroom": "1.2", "maxReplicasFromEnv": "9"}
    assert parse_metadata({"endpoints": URL, **merged}).bounds.max_replicas == 9


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({}, "scalerMetadata needs exactly one of 'endpoints' (static pod URLs), 'deployment'"),
        ({"endpoints": ""}, "needs exactly one of 'endpoints'"),
        ({"endpoints": URL, "deployment": "llama"}, "; got endpoints, deployment"),
        ({"deployment": "llama_8b"}, "key 'deployment' has value 'llama_8b'"),
        ({"deployment": "llama", "metricsPort": "0"}, "key 'metricsPort'"),
        ({"deployment": "llama", "metricsPath": "metrics"}, "key 'metricsPath'"),
        ({"endpoints": "10.0.0.7:8000"}, "expected comma-separated http(s) URLs"),
        ({"endpoints": "ftp://x/metrics"}, "key 'endpoints'"),
        ({"endpoints": "http://x:99999/metrics"}, "key 'endpoints'"),
        ({"endpoints": f"{URL},{URL}"}, "no duplicates"),
        ({"endpoints": URL, "targetQueuePerReplica": "abc"},
         "key 'targetQueuePerReplica' has value 'abc': expected a number > 0"),
        ({"endpoints": URL, "targetQueuePerReplica": "0"}, "targetQueuePerReplica"),
        ({"endpoints": URL, "targetKvCacheUsage": "1.5"},
         "key 'targetKvCacheUsage' has value '1.5': expected a fraction in (0, 1]"),
        ({"endpoints": URL, "targetKvCacheUsage": "nan"}, "targetKvCacheUsage"),
        ({"endpoints": URL, "minReplicas": "-1"}, "key 'minReplicas'"),
        ({"endpoints": URL, "maxReplicas": "0"}, "key 'maxReplicas'"),
        ({"endpoints": URL, "minReplicas": "5", "maxReplicas": "2"},
         "'minReplicas' (5) is greater than 'maxReplicas' (2)"),
        ({"endpoints": URL, "server": "triton"}, "expected one of: vllm, sglang, tgi"),
        ({"endpoints": URL, "metricName": "bad name"}, "key 'metricName'"),
        ({"endpoints": URL, "gpuEndpoints": "dcgm:9400"}, "key 'gpuEndpoints'"),
        ({"endpoints": URL, "tolerance": "2"}, "key 'tolerance'"),
        ({"endpoints": URL, "targetQueue": "5"}, "key 'targetQueue' is not known"),
    ],
)
def test_bad_metadata_names_the_key(metadata, message):
    with pytest.raises(MetadataError) as info:
        parse_metadata(metadata)
    assert message in str(info.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(MetadataError) as info:
        parse_metadata({"endpoints": URL, "tolerance": "x", "maxReplicas": "y", "nope": "1"})
    assert len(info.value.problems) == 3


def test_node_pool_bounds_are_checked():
    spec = parse_metadata({"endpoints": URL, "minNodes": "2", "maxNodes": "4"})
    assert (spec.nodes.min_nodes, spec.nodes.max_nodes) == (2, 4)
    with pytest.raises(MetadataError, match=r"'minNodes' \(5\) is greater than 'maxNodes' \(4\)"):
        parse_metadata({"endpoints": URL, "minNodes": "5", "maxNodes": "4"})
