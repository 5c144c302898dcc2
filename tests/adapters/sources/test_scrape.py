"""PageFetcher against a real aiohttp server on 127.0.0.1: every outcome, and its bounds."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from adapters.sources.scrape import ACCEPT, PageFetcher, ScrapeError

PAGE = "# TYPE up gauge\nup 1\n"


@dataclass
class Server:
    base: str
    accept_headers: list[str | None] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    never: asyncio.Event = field(default_factory=asyncio.Event)


def _app(state: Server) -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        state.accept_headers.append(request.headers.get("Accept"))
        return web.Response(text=PAGE)

    async def error(request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    async def hang(request: web.Request) -> web.Response:
        await state.never.wait()
        return web.Response(text=PAGE)

    async def big(request: web.Request) -> web.Response:
        return web.Response(text="x" * 5000)

    async def big_chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(10):
            await resp.write(b"y" * 1000)
        await resp.write_eof()
        return resp

    async def latin1(request: web.Request) -> web.Response:
        return web.Response(body="up 1\nnaïve 2\n".encode("latin-1"))

    async def slow(request: web.Request) -> web.Response:
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            await asyncio.sleep(float(request.query.get("s", "0.05")))
        finally:
            state.in_flight -= 1
        return web.Response(text=PAGE)

    app = web.Application()
    for path, handler in (("/ok", ok), ("/error", error), ("/hang", hang), ("/big", big),
                          ("/big_chunked", big_chunked), ("/latin1", latin1), ("/slow", slow)):
        app.router.add_get(path, handler)
    return app


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server(base="")
    runner = web.AppRunner(_app(state), access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    state.base = f"http://127.0.0.1:{port}"
    yield state
    state.never.set()
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def _fetcher(session: aiohttp.ClientSession, *, timeout_s: float = 2.0,
             max_concurrency: int = 4, max_bytes: int = 4096) -> PageFetcher:
    return PageFetcher(session=session, timeout_s=timeout_s, max_concurrency=max_concurrency,
                       max_bytes=max_bytes)


async def _error(fetcher: PageFetcher, url: str) -> ScrapeError:
    with pytest.raises(ScrapeError) as info:
        await fetcher.fetch(url)
    assert info.value.url == url
    return info.value


async def test_ok_page_and_accept_header(server: Server,
                                         session: aiohttp.ClientSession) -> None:
    assert await _fetcher(session).fetch(server.base + "/ok") == PAGE
    assert server.accept_headers == [ACCEPT]
    assert ACCEPT == "text/plain;version=0.0.4"


async def test_http_500(server: Server, session: aiohttp.ClientSession) -> None:
    url = server.base + "/error"
    err = await _error(_fetcher(session), url)
    assert err.kind == "http_status"
    assert str(err) == (f"GET {url} returned HTTP 500 Internal Server Error; is this the "
                        "metrics port and path of a healthy pod?")


async def test_timeout_takes_about_the_timeout(server: Server,
                                               session: aiohttp.ClientSession) -> None:
    url = server.base + "/hang"
    started = time.monotonic()
    err = await _error(_fetcher(session, timeout_s=0.2), url)
    elapsed = time.monotonic() - started
    assert err.kind == "timeout"
    assert str(err) == (f"GET {url} timed out after 0.2 s; is the pod overloaded or the "
                        "timeout too short (scrape.timeout_s)?")
    assert 0.19 <= elapsed < 1.0


async def test_connection_refused(session: aiohttp.ClientSession) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/metrics"
    err = await _error(_fetcher(session), url)
    assert err.kind == "connect"
    assert str(err).startswith(f"GET {url} could not connect (")
    assert str(err).endswith("); is the pod running and listening on that port?")


@pytest.mark.parametrize(("path", "what"), [
    ("/big", "declares 5000 bytes"),
    ("/big_chunked", "sent more than 4096 bytes"),
])
async def test_too_large(server: Server, session: aiohttp.ClientSession, path: str,
                         what: str) -> None:
    url = server.base + path
    err = await _error(_fetcher(session, max_bytes=4096), url)
    assert err.kind == "too_large"
    assert str(err) == (f"GET {url} {what}, over the 4096-byte limit; is this a metrics page, "
                        "or did its series count explode?")
    assert len(await _fetcher(session, max_bytes=10_000).fetch(url)) > 4096


async def test_non_utf8_body(server: Server, session: aiohttp.ClientSession) -> None:
    url = server.base + "/latin1"
    err = await _error(_fetcher(session), url)
    assert err.kind == "decode"
    assert str(err) == (f"GET {url} returned a body that is not UTF-8 (byte 0xef at offset 7); "
                        "is this a Prometheus text page?")


async def test_concurrency_is_bounded_across_fetches(server: Server,
                                                     session: aiohttp.ClientSession) -> None:
    fetcher = _fetcher(session, max_concurrency=3)
    pages = await asyncio.gather(*(fetcher.fetch(server.base + "/slow") for _ in range(10)))
    assert pages == [PAGE] * 10
    assert server.max_in_flight == 3


async def test_waiting_for_a_slot_does_not_count_against_the_timeout(
        server: Server, session: aiohttp.ClientSession) -> None:
    fetcher = _fetcher(session, max_concurrency=1, timeout_s=0.5)
    started = time.monotonic()
    pages = await asyncio.gather(*(fetcher.fetch(server.base + "/slow?s=0.2") for _ in range(3)))
    assert pages == [PAGE] * 3
    assert time.monotonic() - started >= 0.6
    assert server.max_in_flight == 1


def test_constructor_checks_its_bounds() -> None:
    with pytest.raises(ValueError, match="max_concurrency must be >= 1, got 0"):
        PageFetcher(session=None, timeout_s=1.0, max_concurrency=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout_s must be > 0, got 0"):
        PageFetcher(session=None, timeout_s=0, max_concurrency=1)  # type: ignore[arg-type]
