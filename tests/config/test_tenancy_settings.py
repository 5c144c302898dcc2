"""The tenancy section: networks read as CIDRs with a precise error, the address rule, and
which of the new limits reload hot (tenancy, workloads) or need a restart (server)."""

from __future__ import annotations

import dataclasses
from ipaddress import ip_address, ip_network

import pytest

from scaler.config.load import ConfigError, needs_restart, parse_config
from scaler.config.settings import ServiceConfig


def test_networks_are_read_as_cidrs():
    config = parse_config('tenancy:\n  endpoint_networks: [10.0.0.0/8, "fd00::/8", 192.0.2.7]\n')
    assert config.tenancy.endpoint_networks == (
        ip_network("10.0.0.0/8"), ip_network("fd00::/8"), ip_network("192.0.2.7/32"))


@pytest.mark.parametrize("value", ["[]", "10.0.0.0/8", "[10.0.0.1/8]", "[nonsense]", "[10]",
                                   "{a: b}"])
def test_bad_networks_are_named_with_the_accepted_form(value):
    with pytest.raises(ConfigError) as info:
        parse_config(f"tenancy:\n  endpoint_networks: {value}\n")
    (problem,) = info.value.problems
    assert problem.startswith("tenancy.endpoint_networks:")
    assert "a non-empty list of CIDRs" in problem


@pytest.mark.parametrize(("address", "allowed"), [
    ("10.1.2.3", True), ("10.255.0.1", True), ("11.0.0.1", False), ("fd00::1", False),
    ("169.254.169.254", False), ("fe80::1", False), ("::ffff:10.1.2.3", True),
    ("::ffff:169.254.169.254", False)])
def test_an_address_is_allowed_inside_the_networks_and_never_link_local(address, allowed):
    tenancy = parse_config("tenancy:\n  endpoint_networks: [10.0.0.0/8]\n").tenancy
    reason = tenancy.address_problem(ip_address(address))
    assert (reason is None) == allowed, reason
    if not allowed:
        assert "link-local" in reason or "tenancy.endpoint_networks" in reason


def test_link_local_is_refused_with_the_default_networks():
    tenancy = ServiceConfig().tenancy
    assert tenancy.address_problem(ip_address("8.8.8.8")) is None
    assert "link-local" in (tenancy.address_problem(ip_address("169.254.169.254")) or "")


def test_tenancy_and_workload_limits_reload_hot_server_limits_need_a_restart():
    old = ServiceConfig()
    hot = parse_config("tenancy:\n  cross_namespace: true\n  max_metadata_bytes: 100\n"
                       "  endpoint_networks: [10.0.0.0/8]\n"
                       "workloads:\n  max_workloads: 5\n  max_endpoints: 5\n")
    assert needs_restart(old, hot) == []
    cold = dataclasses.replace(old, server=parse_config(
        "server:\n  grpc_max_message_bytes: 65536\n  grpc_max_concurrent_streams: 10\n").server)
    assert needs_restart(old, cold) == ["server"]
