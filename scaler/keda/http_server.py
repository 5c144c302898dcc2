"""HTTP side: Prometheus metrics, probes, and the decision as JSON for KEDA's metrics-api.

``GET /api/v1/namespaces/{namespace}/scaledobjects/{name}?endpoints=...`` takes
the same keys as the gRPC trigger metadata in its query string and answers::

    {"desiredReplicas": 3, "active": true, "metricName": "desired-replicas", ...}

so a KEDA ``metrics-api`` trigger with ``valueLocation: desiredReplicas`` and
``targetValue: "1"`` asks the HPA for exactly the same count as the gRPC path.
Errors are JSON too: 400 names each bad key, 413 or 429 the operator limit a
request is past (nothing registered), 503 says why there is no fresh decision
(KEDA then applies the ScaledObject's fallback). Every route is
read-only (GET and HEAD; anything else is 405). With ``server.http_tls`` it is HTTPS
with the gRPC server's certificate.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from scaler.config.settings import ServerSettings
from scaler.keda.metadata import MetadataError
from scaler.service.service import LimitExceeded, ScalerService, Unavailable, resolve_naming_hosts
from scaler.service.telemetry import fleet_signals

log = logging.getLogger("scaler.http")

SERVICE_KEY = web.AppKey("service", ScalerService)
DECISION_ROUTE = "/api/v1/namespaces/{namespace}/scaledobjects/{name}"


def build_app(service: ScalerService) -> web.Application:
    app = web.Application()
    app[SERVICE_KEY] = service
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get(DECISION_ROUTE, decision)
    return app


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[SERVICE_KEY].telemetry.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    if not service.ready:
        return web.json_response({"status": "starting"}, status=503)
    reasons = [reason for check in service.readiness_checks if (reason := check())]
    if reasons:
        return web.json_response({"status": "not ready", "reasons": reasons}, status=503)
    return web.json_response({"status": "ready", "workloads": len(service.registry)})


async def decision(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    namespace = request.match_info["namespace"]
    name = request.match_info["name"]
    try:
        workload = await resolve_naming_hosts(service, namespace, name, dict(request.query))
        answer = service.answer(workload)
    except MetadataError as exc:
        return _error(service, 400, "invalid_metadata", str(exc), problems=exc.problems)
    except LimitExceeded as exc:
        return _error(service, exc.http_status, "resource_exhausted", str(exc),
                      setting=exc.setting)
    except Unavailable as exc:
        return _error(service, 503, "unavailable", str(exc))
    service.telemetry.http_requests.labels("200").inc()
    now = service.clock.monotonic()
    body: dict[str, Any] = {
        "namespace": namespace,
        "scaledObject": name,
        "metricName": workload.spec.metric_name,
        "desiredReplicas": answer.decision.desired_replicas,
        "active": answer.decision.active,
        "reason": answer.decision.reason,
        "proposals": {p.signal: p.replicas for p in answer.decision.proposals},
        "signals": fleet_signals(workload, now, service.config.scrape.stale_after_s),
        "dataAgeSeconds": round(answer.data_age_s, 3),
    }
    if answer.decision.desired_nodes is not None:  # the predictive node plan
        body["desiredNodes"] = answer.decision.desired_nodes
    return web.json_response(body)


def _error(service: ScalerService, status: int, code: str, message: str,
           **extra: Any) -> web.Response:
    service.telemetry.http_requests.labels(str(status)).inc()
    return web.json_response({"error": code, "message": message, **extra}, status=status)


async def start_http_server(service: ScalerService, *, host: str, port: int,
                            ssl_context: ssl.SSLContext | None = None
                            ) -> tuple[web.AppRunner, int]:
    """Start serving (HTTPS with ``ssl_context``); returns the runner and the bound port."""
    runner = web.AppRunner(build_app(service), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    scheme = "HTTP" if ssl_context is None else "HTTPS"
    log.info("%s listening on %s:%d", scheme, host, bound)
    return runner, bound


def https_context(server: ServerSettings) -> ssl.SSLContext:
    """TLS for the HTTP server from the gRPC server's certificate and key.

    No client certificate is asked even when gRPC requires one: kubelet probes and
    Prometheus scrape with a CA at most, and every route is read-only.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # A password (never used for an unencrypted key) so OpenSSL never prompts on a tty.
    context.load_cert_chain(server.tls_cert_file, server.tls_key_file, password=b"")
    return context
