"""Prometheus answers are read like metrics pages: with a byte cap, never whole, and an answer
this reader cannot use is a PrometheusError (the caller's "no history" / "scrape the pods"),
never an exception that ends a task."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from adapters.sources.prometheus import MAX_ANSWER_BYTES, PrometheusError, query_range
from adapters.sources.prometheus_pods import query_pod_samples

ANSWER_MB = 80


class FakePrometheus:
    """An HTTP server answering every query with ``body`` (bytes, or a streamed size)."""

    def __init__(self) -> None:
        self.body: bytes | int = b"{}"
        self.sent = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if isinstance(self.body, bytes):
            return web.Response(body=self.body, content_type="application/json")
        response = web.StreamResponse()  # chunked, no length declared: read to find out
        response.content_type = "application/json"
        await response.prepare(request)
        chunk = b'{"status":"success","data":{"resultType":"matrix","result":[' + b" " * 65_000
        try:
            while self.sent < self.body:
                await response.write(chunk)
                self.sent += len(chunk)
        except (ConnectionError, RuntimeError):
            return response  # the reader hung up
        return response


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakePrometheus, str]]:
    server = FakePrometheus()
    app = web.Application()
    app.router.add_get("/api/v1/query_range", server.handle)
    app.router.add_get("/api/v1/query", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield server, f"http://127.0.0.1:{port}"
    await runner.cleanup()


Query = Callable[[aiohttp.ClientSession, str], Awaitable[Any]]


async def _range(session: aiohttp.ClientSession, url: str) -> Any:
    return await query_range(session, url, "up", start_s=0, end_s=600, step_s=60)


async def _pods(session: aiohttp.ClientSession, url: str) -> Any:
    return await query_pod_samples(session, url, '{__name__="up"}[60s]')


QUERIES = pytest.mark.parametrize("query", [_range, _pods], ids=["query_range", "pod samples"])


@QUERIES
async def test_an_80_mb_answer_is_refused_without_reading_it(fake, query: Query) -> None:
    server, url = fake
    server.body = ANSWER_MB * 2**20
    async with aiohttp.ClientSession() as session:
        with pytest.raises(PrometheusError, match=r"more than \d+ bytes"):
            await query(session, url)
    await asyncio.sleep(0.1)  # the server notices the hang-up
    assert server.sent < MAX_ANSWER_BYTES + 16 * 2**20  # the cap, and what was in flight
    assert MAX_ANSWER_BYTES < ANSWER_MB * 2**20 / 2


@QUERIES
async def test_a_declared_length_over_the_cap_is_refused_before_reading(fake,
                                                                         query: Query) -> None:
    server, url = fake
    server.body = b" " * (MAX_ANSWER_BYTES + 1)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(PrometheusError, match="bytes"):
            await query(session, url)


MALFORMED = [
    b"not json", b"[1, 2]", b'{"status": "success", "data": null}',
    b'{"status": "success", "data": {"resultType": "matrix", "result": 5}}',
    b'{"status": "success", "data": {"resultType": "matrix", "result": [5]}}',
    b'{"status": "success", "data": {"resultType": "matrix", "result": '
    b'[{"metric": {"__name__": "up", "pod": "p"}, "values": 7}]}}',
    b'{"status": "success", "data": {"resultType": "matrix", "result": '
    b'[{"metric": {"__name__": "up", "pod": "p"}, "values": [["x", "1"]]}]}}',
    b'{"status": "success", "data": {"resultType": "matrix", "result": '
    b'[{"metric": {"__name__": "up", "pod": "p"}, "values": [[1, "2", 3]]}]}}',
    b'{"status": "success", "data": {"resultType": "matrix", "result": '
    b'[{"metric": {"__name__": "up", "pod": "p"}, "values": [[1]]}]}}',
    b"[" * 100_000 + b"]" * 100_000,
    json.dumps({"status": "error", "error": {"nested": True}}).encode(),
]


@QUERIES
@pytest.mark.parametrize("body", MALFORMED, ids=range(len(MALFORMED)))
async def test_a_malformed_answer_is_a_prometheus_error(fake, query: Query,
                                                        body: bytes) -> None:
    server, url = fake
    server.body = body
    async with aiohttp.ClientSession() as session:
        with pytest.raises(PrometheusError):
            await query(session, url)
