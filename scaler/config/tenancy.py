"""What a ScaledObject's metadata may make the scaler reach: the operator's limits.

Trigger metadata is written by whoever may create a ScaledObject, and the scaler acts on it
with its own network position and its own Prometheus: it fetches the URLs a trigger names
and reads the series a selector names. ``tenancy`` bounds that: the networks pages may be
fetched from, whether a trigger may read another namespace, and how much metadata one call
may carry. All of it reloads hot; a tightened setting refuses at the next call.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import Any

from scaler.schema import at_least, setting

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address
ALL_ADDRESSES: tuple[Network, ...] = (ip_network("0.0.0.0/0"), ip_network("::/0"))
# Cloud metadata services and node-local agents live here: never a pod's metrics page.
LINK_LOCAL: tuple[Network, ...] = (ip_network("169.254.0.0/16"), ip_network("fe80::/10"))


def _networks(raw: Any) -> tuple[Network, ...]:
    """A non-empty YAML list of CIDRs (a bare address is a /32 or /128)."""
    if not isinstance(raw, list | tuple) or not raw or \
            not all(isinstance(item, str) for item in raw):
        raise ValueError(raw)
    return tuple(ip_network(item.strip(), strict=True) for item in raw)


@dataclass(frozen=True)
class TenancySettings:
    endpoint_networks: tuple[Network, ...] = setting(
        ALL_ADDRESSES, parse=_networks,
        accepted="a non-empty list of CIDRs, e.g. [10.0.0.0/8, fd00::/8]",
        shown_default="[0.0.0.0/0, ::/0] (all)",
        doc="Networks (CIDRs) that the addresses of trigger `endpoints` and `gpuEndpoints`, "
            "of discovered pods and of gpu.selector's dcgm-exporter pods must be in; host names"
            " are resolved and every address checked, before registration and again at each "
            "connection. Link-local addresses (169.254.0.0/16, fe80::/10: cloud metadata) are "
            "refused whatever this says, and redirects are never followed. Set it to the pod "
            "network(s). Hot: a narrower list refuses at a workload's next call and its pages "
            "are no longer fetched.")
    cross_namespace: bool = setting(
        False, doc="Let a trigger read outside its ScaledObject's namespace. false: "
                   "`podNamespace` must be the ScaledObject's namespace, `prometheusSelector` "
                   "is held to it (`namespace=\"<the ScaledObject's>\"` is added; a selector "
                   "naming the namespace otherwise is refused) and `historyQuery` may only be "
                   "set in tuning (the ConfigMap). Hot.")
    max_metadata_bytes: int = setting(
        16384, check=at_least(1),
        doc="Most bytes of trigger metadata (keys and values, after tuning is merged in) one "
            "call may carry; past it the call is refused with RESOURCE_EXHAUSTED (HTTP 413) "
            "and nothing is registered. Hot.")

    def address_problem(self, address: Address) -> str | None:
        """Why the scaler must not connect to ``address``, or None if it may."""
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in LINK_LOCAL):
            return (f"{address} is link-local (169.254.0.0/16, fe80::/10: cloud metadata and "
                    "node-local services), which is never allowed")
        if not any(address in network for network in self.endpoint_networks):
            allowed = ", ".join(str(n) for n in self.endpoint_networks)
            return f"{address} is outside tenancy.endpoint_networks ({allowed})"
        return None
