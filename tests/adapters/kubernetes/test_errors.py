"""Failure classification: what the API server answered, as a JSON object or a DiscoveryError
whose message says what to check. The reflector's use of these (back-off, logging once) is in
test_discovery; here each answer is a stand-in for aiohttp's response."""

from __future__ import annotations

import math
from typing import Any

import pytest

from adapters.kubernetes.errors import (
    DiscoveryError,
    _retry_after_s,
    connection_failure,
    error_event_failure,
    fetch_json,
    http_failure,
    raw_response,
)

WHAT = "LIST pods in llm (app=llama)"
HOST = "https://10.0.0.1:6443"


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code,
            "reason": reason, "message": message}


class Answer:
    """The few parts of an ``aiohttp.ClientResponse`` the classification reads."""

    def __init__(self, status: int, body: bytes, *, reason: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.status, self.reason, self.headers = status, reason, headers or {}
        self.body = body
        self.released = False

    async def read(self) -> bytes:
        return self.body

    def release(self) -> None:
        self.released = True


async def answered(answer: object) -> object:
    return answer


@pytest.mark.parametrize(("header", "details", "expected"), [
    ("3", {}, 3.0),
    (None, {"retryAfterSeconds": 7}, 7.0),
    ("Wed, 21 Oct 2026 07:28:00 GMT", {"retryAfterSeconds": 2}, 2.0),  # a date: not seconds
    ("-1", {"retryAfterSeconds": math.inf}, None),
    (None, {"retryAfterSeconds": True}, None),
    (None, {}, None),
])
def test_retry_after_is_the_header_else_the_status_details(
        header: str | None, details: dict[str, Any], expected: float | None) -> None:
    assert _retry_after_s(header, {"details": details}) == expected


async def test_an_http_error_keeps_the_server_s_message_and_adds_a_hint() -> None:
    body = b'{"kind": "Status", "code": 403, "message": "pods is forbidden"}'
    failure = await http_failure(raw_response(Answer(403, body, reason="Forbidden")), WHAT)
    assert (failure.key, failure.status, failure.retry_after_s) == ("HTTP 403", 403, None)
    assert str(failure) == (
        f"{WHAT} returned HTTP 403 Forbidden: pods is forbidden; does the scaler's "
        "ServiceAccount have RBAC to get, list and watch pods and to get deployments, "
        "statefulsets and their scale subresource in this namespace?")
    throttled = await http_failure(raw_response(Answer(
        429, b"slow down\n", headers={"Retry-After": "4"})), WHAT)
    assert (throttled.key, throttled.retry_after_s) == ("HTTP 429", 4.0)
    assert str(throttled) == (
        f"{WHAT} returned HTTP 429: slow down; the API server is throttling this client")


def test_an_error_event_names_its_code_and_reason() -> None:
    failure = error_event_failure(status(500, "InternalError", "etcd timeout"), WHAT)
    assert (failure.key, failure.status) == ("event 500", 500)
    assert str(failure) == (
        f"{WHAT} sent an ERROR event 500 InternalError: etcd timeout; is the API server healthy?")
    bare = error_event_failure({"code": True}, WHAT)
    assert (bare.key, str(bare)) == ("event 0", f"{WHAT} sent an ERROR event 0: (no detail)")


def test_a_connection_failure_names_the_host() -> None:
    failure = connection_failure(WHAT, ConnectionResetError(), HOST)
    assert failure.key == "connection ConnectionResetError" and failure.status is None
    assert str(failure) == (f"{WHAT} failed: ConnectionResetError: no detail; is the API "
                            f"server at {HOST} reachable?")


async def test_fetch_json_returns_the_object_or_says_why_not() -> None:
    good = Answer(200, b'{"kind": "PodList", "items": []}')
    assert await fetch_json(answered(good), WHAT, HOST) == {"kind": "PodList", "items": []}
    assert good.released

    refused = Answer(404, b"", reason="Not Found")
    with pytest.raises(DiscoveryError) as missing:
        await fetch_json(answered(refused), WHAT, HOST)
    assert str(missing.value) == (f"{WHAT} returned HTTP 404 Not Found: (no detail); do the "
                                  "namespace and the workload exist?")
    assert refused.released

    with pytest.raises(DiscoveryError) as html:
        await fetch_json(answered(Answer(200, b"<html>login</html>")), WHAT, HOST)
    assert html.value.key == "decode"
    assert str(html.value) == (
        f"{WHAT} answered with something that is not a JSON object: b'<html>login</html>'; "
        "is the configured host a Kubernetes API server?")

    async def unreachable() -> object:
        raise TimeoutError

    with pytest.raises(DiscoveryError) as timeout:
        await fetch_json(unreachable(), WHAT, HOST)
    assert timeout.value.key == "connection TimeoutError"
