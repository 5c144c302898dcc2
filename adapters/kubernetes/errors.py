"""Why a request to the Kubernetes API server failed, in words an operator can act on.

Every failure the reflector (``discovery``) meets becomes one ``DiscoveryError``: its ``key``
names the kind of failure, so the reflector logs a failure once when it starts or changes kind
rather than once per retry; its message says what failed and what to check (RBAC for a 403,
credentials for a 401, the API server's health for a 5xx); ``status`` and ``retry_after_s``
(the Retry-After header, else the Status's ``details.retryAfterSeconds``) carry what the
back-off needs. ``TRANSPORT_ERRORS`` are the exceptions that mean the connection, not the
server, failed.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Mapping
from typing import Any, cast

import aiohttp

from adapters.kubernetes import wire

__all__ = [
    "TRANSPORT_ERRORS",
    "DiscoveryError",
    "connection_failure",
    "error_event_failure",
    "fetch_json",
    "http_failure",
    "raw_response",
]


class DiscoveryError(Exception):
    """A request to the API server failed; ``key`` names the kind of failure (for de-duplicated
    logging), the message what happened and what to check."""

    def __init__(self, key: str, message: str, *, status: int | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.status = status
        self.retry_after_s = retry_after_s


def _retry_after_s(header: str | None, status_obj: Mapping[str, Any]) -> float | None:
    """Retry-After in seconds (the header, else the Status's details.retryAfterSeconds)."""
    candidates = [header, wire.mapping(status_obj.get("details")).get("retryAfterSeconds")]
    for candidate in candidates:
        if isinstance(candidate, bool) or not isinstance(candidate, str | int | float):
            continue
        try:
            seconds = float(candidate)
        except ValueError:
            continue  # an HTTP-date: the API server sends seconds; fall back to the back-off
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


_HINTS: dict[int, str] = {
    401: "; are the scaler's API credentials valid?",
    403: ("; does the scaler's ServiceAccount have RBAC to get, list and watch pods and to get "
          "deployments, statefulsets and their scale subresource in this namespace?"),
    404: "; do the namespace and the workload exist?",
    410: "; the resource version is too old",
    429: "; the API server is throttling this client",
}


def _status_failure(key: str, lead: str, status: int, detail: str,
                    retry_after_s: float | None) -> DiscoveryError:
    hint = _HINTS.get(status, "; is the API server healthy?" if status >= 500 else "")
    return DiscoveryError(key, f"{lead}: {detail or '(no detail)'}{hint}", status=status,
                          retry_after_s=retry_after_s)


async def http_failure(resp: aiohttp.ClientResponse, what: str) -> DiscoveryError:
    """The failure for an HTTP error answer, with the Status message the server sent."""
    body = await resp.read()
    status_obj = wire.json_mapping(body)
    detail = wire.text(status_obj.get("message")) or body[:200].decode("utf-8", "replace").strip()
    lead = f"{what} returned HTTP {resp.status} {resp.reason or ''}".rstrip()
    retry = _retry_after_s(resp.headers.get("Retry-After"), status_obj)
    return _status_failure(f"HTTP {resp.status}", lead, resp.status, detail, retry)


def error_event_failure(status_obj: Mapping[str, Any], what: str) -> DiscoveryError:
    """The failure for a watch ERROR event other than 410 (its object is a Status)."""
    code = status_obj.get("code")
    status = code if isinstance(code, int) and not isinstance(code, bool) else 0
    reason = wire.text(status_obj.get("reason")) or ""
    lead = f"{what} sent an ERROR event {status} {reason}".rstrip()
    detail = wire.text(status_obj.get("message")) or ""
    return _status_failure(f"event {status}", lead, status, detail,
                           _retry_after_s(None, status_obj))


def connection_failure(what: str, exc: BaseException, host: str) -> DiscoveryError:
    kind = type(exc).__name__
    detail = str(exc) or "no detail"
    return DiscoveryError(f"connection {kind}", (
        f"{what} failed: {kind}: {detail}; is the API server at {host} reachable?"))


TRANSPORT_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)


async def fetch_json(request: Awaitable[object], what: str, host: str) -> Mapping[str, Any]:
    """Await a ``_preload_content=False`` call and return its JSON object body."""
    try:
        resp = raw_response(await request)
        try:
            if resp.status >= 300:
                raise await http_failure(resp, what)
            body = await resp.read()
        finally:
            resp.release()
    except TRANSPORT_ERRORS as exc:
        raise connection_failure(what, exc, host) from exc
    obj = wire.json_mapping(body)
    if not obj:
        raise DiscoveryError("decode", (
            f"{what} answered with something that is not a JSON object: {body[:120]!r}; "
            "is the configured host a Kubernetes API server?"))
    return obj


def raw_response(response: object) -> aiohttp.ClientResponse:
    """The answer of a ``_preload_content=False`` call: the aiohttp response itself (the
    client's type stubs only know the deserialised model)."""
    return cast(aiohttp.ClientResponse, response)
