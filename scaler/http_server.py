"""HTTP side: Prometheus metrics, probes, and the decision as JSON for KEDA's metrics-api.

``GET /api/v1/namespaces/{namespace}/scaledobjects/{name}?endpoints=...`` takes
the same keys as the gRPC trigger metadata in its query string and answers::

    {"desiredReplicas": 3, "active": true, "metricName": "desired-replicas", ...}

so a KEDA ``metrics-api`` trigger with ``valueLocation: desiredReplicas`` and
``targetValue: "1"`` asks the HPA for exactly the same count as the gRPC path.
Errors are JSON too: 400 names each bad key, 503 says why there is no fresh
decision (KEDA then applies the ScaledObject's fallback). Every route is
read-only (GET).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from scaler.metadata import MetadataError
from scaler.service import ScalerService, Unavailable
from scaler.telemetry import fleet_signals

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
    return web.json_response({"status": "ready", "workloads": len(service.registry)})


async def decision(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    namespace = request.match_info["namespace"]
    name = request.match_info["name"]
    try:
        workload = service.resolve(namespace, name, dict(request.query))
        answer = service.answer(workload)
    except MetadataError as exc:
        return _error(service, 400, "invalid_metadata", str(exc), problems=exc.problems)
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
    return web.json_response(body)


def _error(service: ScalerService, status: int, code: str, message: str,
           **extra: Any) -> web.Response:
    service.telemetry.http_requests.labels(str(status)).inc()
    return web.json_response({"error": code, "message": message, **extra}, status=status)


async def start_http_server(service: ScalerService, *, host: str, port: int
                            ) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(build_app(service), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    log.info("HTTP listening on %s:%d", host, bound)
    return runner, bound
