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

Whoever calls the decision route sets that workload's metadata (and through ``nodePool``
its share of a node pool), so it answers only ``Authorization: Bearer <token>`` with the
token of ``server.http_api_token_file``: without that setting it is off (404 saying how to
turn it on), a missing or wrong token is 401. Both are answered before the query string is
read, so they register, change and scrape nothing. ``/metrics`` and the probes stay open.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from scaler.config.api_token import ApiToken
from scaler.config.settings import ServerSettings
from scaler.keda.metadata import MetadataError
from scaler.service.first_scrape import first_round
from scaler.service.service import LimitExceeded, ScalerService, Unavailable, resolve_naming_hosts
from scaler.service.telemetry import fleet_signals

log = logging.getLogger("scaler.http")

SERVICE_KEY = web.AppKey("service", ScalerService)
TOKEN_KEY = web.AppKey("api_token", ApiToken)
DECISION_ROUTE = "/api/v1/namespaces/{namespace}/scaledobjects/{name}"
ROUTE_OFF = (
    "the metrics-api route is off: set server.http_api_token_file to a file holding a bearer "
    "token (a mounted Secret) and restart the scaler; KEDA's metrics-api trigger then sends it "
    "with authMode: bearer and a TriggerAuthentication whose parameter 'token' comes from a "
    "Secret holding the same token (see deploy/examples/scaledobject-metrics-api.yaml). "
    "The gRPC external scaler needs none of this")
UNAUTHORIZED = (
    "this route needs the header 'Authorization: Bearer <token>' with the token of the "
    "scaler's server.http_api_token_file (KEDA: authMode: bearer and a TriggerAuthentication "
    "with parameter 'token')")


def build_app(service: ScalerService, api_token: ApiToken | None = None) -> web.Application:
    """The routes; the decision route answers only callers sending ``api_token`` (None: off)."""
    app = web.Application()
    app[SERVICE_KEY] = service
    if api_token is not None:
        app[TOKEN_KEY] = api_token
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
    refused = _refused(request)
    if refused is not None:
        return refused
    namespace = request.match_info["namespace"]
    name = request.match_info["name"]
    try:
        workload = await resolve_naming_hosts(service, namespace, name, dict(request.query))
        await first_round(service, workload.key)  # a new workload: its first scrape, bounded
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


def _refused(request: web.Request) -> web.Response | None:
    """The answer to a caller who may not ask (the route off, no or a wrong token), else None.

    Nothing of the request but its Authorization header is read before this.
    """
    service = request.app[SERVICE_KEY]
    token = request.app.get(TOKEN_KEY)
    if token is None:
        return _error(service, 404, "metrics_api_off", ROUTE_OFF)
    if token.matches(request.headers.get("Authorization")):
        return None
    given = "Authorization" in request.headers
    challenge = 'Bearer realm="llm-predictive-scaler"' + (
        ', error="invalid_token"' if given else "")  # RFC 6750: no error code when none sent
    return _error(service, 401, "unauthorized", UNAUTHORIZED,
                  headers={"WWW-Authenticate": challenge})


def _error(service: ScalerService, status: int, code: str, message: str,
           headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    service.telemetry.http_requests.labels(str(status)).inc()
    return web.json_response({"error": code, "message": message, **extra}, status=status,
                             headers=headers)


async def start_http_server(service: ScalerService, *, host: str, port: int,
                            ssl_context: ssl.SSLContext | None = None,
                            api_token: ApiToken | None = None) -> tuple[web.AppRunner, int]:
    """Start serving (HTTPS with ``ssl_context``); returns the runner and the bound port.

    ``api_token``: what callers of the metrics-api route must send (None: the route is off).
    """
    runner = web.AppRunner(build_app(service, api_token), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise OSError(f"cannot listen for HTTP on {host}:{port}: "
                      f"{exc.strerror or exc}") from exc
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    scheme = "HTTP" if ssl_context is None else "HTTPS"
    log.info("%s listening on %s:%d; metrics-api route %s", scheme, host, bound,
             "off (no server.http_api_token_file)" if api_token is None
             else "on, bearer token required")
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
