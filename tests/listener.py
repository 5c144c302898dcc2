"""A TCP port that counts the connections it accepts: "somewhere outside"."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from aiohttp import web


class Listener:
    """Listens on a loopback address (127.0.0.2 stands for an address outside the allowed
    networks); ``accepted`` counts connections, each answered 404 and closed (an answer, so
    that an HTTP client has no reason to try again)."""

    def __init__(self, host: str = "127.0.0.2", port: int = 0) -> None:
        self.host = host
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self.port = port

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()


async def serve(routes: dict[str, Callable[[], web.StreamResponse]],
                host: str = "127.0.0.1") -> tuple[web.AppRunner, str]:
    """A small HTTP server: each path answers what its function makes (an HTTPException is
    raised, as aiohttp wants); (the runner to clean up, the base URL)."""
    app = web.Application()
    for path, answer in routes.items():
        async def handle(request: web.Request, answer: Any = answer) -> web.StreamResponse:
            response = answer()
            if isinstance(response, web.HTTPException):
                raise response
            return response

        app.router.add_get(path, handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    return runner, f"http://{host}:{runner.addresses[0][1]}"
