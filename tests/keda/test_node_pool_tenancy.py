"""A shared node pool through KEDA's own API: who may count toward it, and how much.

The attacker is a tenant who may write ScaledObjects in their own namespace and names the
operator's expensive pool with a large ``minNodes``. gRPC calls come from a client generated
from the proto, against the real server (in this process and in a front process); the
Kubernetes API is kmock over real HTTP, so "no Kubernetes call" is checked on the wire.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import grpc
import pytest
from kubernetes_asyncio.client import ApiClient

from scaler.commands.serve import RunningApp, start_app
from scaler.config.load import parse_config
from scaler.keda.proto import externalscaler_pb2 as pb
from scaler.model.nodes import pool_nodes
from scaler.service.service import ScalerService
from tests.clock import ManualClock
from tests.conftest import make_config
from tests.kube_api import NS, ApiServer, add_md, md_replicas, scale_patches

URL = "http://127.0.0.1:9/metrics"
POOLS = f"""
node_pools:
  lease_namespace: {NS}
  pools:
    h100:
      actuator: machinedeployment
      namespace: {NS}
      target: pool
      max_nodes: 16
      namespaces: [llm]
"""


@pytest.fixture(params=[False, True], ids=["one process", "front process"])
async def app(request: pytest.FixtureRequest, api: ApiClient,
              server: ApiServer) -> AsyncIterator[RunningApp]:
    add_md(server, 2)
    config = dataclasses.replace(make_config({"front_process": request.param}),
                                 node_pools=parse_config(POOLS).node_pools)
    service = ScalerService(config, clock=ManualClock(), background=False, kube_api=api)
    running = await start_app(config, service)
    yield running
    await running.stop()


def ref(namespace: str, **metadata: str) -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name="sneaky", namespace=namespace,
                              scalerMetadata={"endpoints": URL, "nodePool": "h100", **metadata})


async def test_a_tenant_outside_the_pool_s_namespaces_is_refused_before_anything_happens(
        app: RunningApp, keda, server: ApiServer) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await keda.GetMetricSpec(ref("team-x", minNodes="40"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "") == (
        "scalerMetadata key 'nodePool' has value 'h100': a workload in namespace 'team-x' may"
        " not count toward it (node_pools.pools.h100.namespaces: llm); remove nodePool, or ask"
        " the operator to list the namespace")
    assert len(app.service.registry) == 0
    # The only Kubernetes calls are the leader election's: nothing read or scaled for it.
    assert {r.resource.plural for r in server if r.resource is not None} <= {"leases"}
    assert md_replicas(server) == 2 and not scale_patches(server)


async def test_a_tenant_s_node_asks_are_clamped_to_the_pool_s_bound(
        app: RunningApp, keda) -> None:
    await keda.GetMetricSpec(ref("llm", minNodes="40", spareNodes="40", maxNodes="50"))
    (workload,) = app.service.registry
    nodes = workload.spec.nodes
    assert (nodes.min_nodes, nodes.spare_nodes, nodes.max_nodes) == (16, 16, 16)
    (pool,) = app.service.config.node_pools.pools
    assert pool_nodes(10 * 40, min_nodes=pool.min_nodes, max_nodes=pool.max_nodes) == 16
