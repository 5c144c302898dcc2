"""The ``hello`` that starts a front process: what it needs to serve KEDA as this one would.

Sent once over the socket pair (``scaler.keda.front.channel``), so the front reads no config
file and no TLS file of its own: the scaling process read them, and the front serves with
exactly what was checked there.
"""

from __future__ import annotations

from scaler.config.settings import ServiceConfig
from scaler.config.tls import TlsMaterial
from scaler.keda.front.channel import Message
from scaler.keda.front.server import ASK_TIMEOUT_S


def hello(config: ServiceConfig, port: int, tls: TlsMaterial | None) -> Message:
    """The gRPC server's settings, the TLS material, and how long a call waits for an ask
    (longer than the first scrape round a new workload's first call waits for)."""
    server = config.server
    material = None
    if tls is not None:
        material = {"cert_chain": tls.cert_chain.decode(), "private_key": tls.private_key.decode(),
                    "client_ca": tls.client_ca.decode() if tls.client_ca else None}
    return {"t": "hello", "host": server.host, "port": port, "tls": material,
            "grace_s": server.grace_s, "max_message_bytes": server.grpc_max_message_bytes,
            "max_concurrent_streams": server.grpc_max_concurrent_streams,
            "keepalive_s": server.grpc_keepalive_s,
            "keepalive_timeout_s": server.grpc_keepalive_timeout_s,
            "idle_s": config.workloads.idle_timeout_s,
            "ask_timeout_s": max(ASK_TIMEOUT_S, config.scrape.timeout_s + 1),
            "max_metadata_bytes": config.tenancy.max_metadata_bytes}
