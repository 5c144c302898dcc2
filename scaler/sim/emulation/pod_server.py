"""An emulated vLLM pod: a real aiohttp server on loopback serving a real-format ``/metrics``.

Why: the scaler's scrape path (aiohttp client, parser, snapshot, window) must be tested end to
end against real HTTP, including the ways real pods fail, without a GPU. Tests, the demo and
the benchmarks mutate ``engines`` and ``version`` between scrapes and flip ``fault`` at run
time:

- ``None``: the page of ``render_page(engines, version=..., model_name=...)``;
- ``"http_500"``: HTTP 500 with a short text body;
- ``"garbage"``: HTTP 200 with an HTML error page (what a misrouted ingress returns);
- ``"truncated"``: headers announce the whole page, half of it is sent, then the connection
  is closed (a pod dying mid-response);
- ``"slow"``: the page after ``slow_s`` seconds;
- ``"hang"``: no answer until the pod is stopped (clients must time out).

"Down" is simply ``stop()``; ``start()`` again re-binds the same port, like a restarted pod.
Binds loopback only, unless ``loopback_only=False`` (``scaler emulate --host``, for a
Prometheus in a container or on another machine). ``refresh``, when set, is called before
each page is rendered, so state that follows a clock is brought up to date at each scrape.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Literal, Self

from aiohttp import web

from scaler.sim.emulation.engine_state import EngineState
from scaler.sim.emulation.vllm_metrics import DEFAULT_MODEL, render_page

__all__ = ["EmulatedVllmPod", "Fault"]

Fault = Literal[None, "http_500", "garbage", "truncated", "slow", "hang"]
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_GARBAGE = ("<html><head><title>502 Bad Gateway</title></head>\n<body>\n"
            "<center><h1>502 Bad Gateway</h1></center>\n<hr><center>nginx</center>\n"
            "</body>\n</html>\n")


class EmulatedVllmPod:
    """A vLLM ``/metrics`` endpoint on loopback (127.0.0.1 unless ``host`` names another 127.x
    address, so several pods can share one port as real pods do); ``async with`` or
    start()/stop()."""

    def __init__(self, engines: Sequence[EngineState] | None = None, *, version: str = "0.12",
                 model_name: str = DEFAULT_MODEL, port: int = 0,
                 host: str = "127.0.0.1", loopback_only: bool = True) -> None:
        if loopback_only and not host.startswith("127."):
            raise ValueError(f"host {host!r}: an emulated pod listens on loopback (127.x) only")
        self.host = host
        self.engines: list[EngineState] = list(engines) if engines else [EngineState()]
        self.version = version
        self.model_name = model_name
        self.fault: Fault = None
        self.slow_s = 1.0
        self.requests_served = 0
        self.last_accept: str | None = None
        self.refresh: Callable[[], None] | None = None
        self._port = port
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()

    @property
    def port(self) -> int:
        """The bound port (0 before the first start())."""
        return self._port

    @property
    def url(self) -> str:
        """The ``/metrics`` URL of this pod."""
        if self._port == 0:
            raise RuntimeError("EmulatedVllmPod.url is only known after start()")
        return f"http://{self.host}:{self._port}/metrics"

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        """Listen on ``host`` (the same port again after a stop())."""
        if self._runner is not None:
            raise RuntimeError("EmulatedVllmPod is already started")
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = _bound_port(runner)

    async def stop(self) -> None:
        """Close the listener and every open request (hung ones included)."""
        runner, self._runner = self._runner, None
        self._stopping.set()
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    def page(self) -> str:
        """The page the pod would serve now without a fault."""
        if self.refresh is not None:
            self.refresh()
        return render_page(self.engines, version=self.version, model_name=self.model_name)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests_served += 1
        self.last_accept = request.headers.get("Accept")
        fault = self.fault
        if fault == "http_500":
            return web.Response(status=500, text="Internal Server Error\n")
        if fault == "garbage":
            return web.Response(text=_GARBAGE, content_type="text/html")
        if fault == "hang":
            await self._stopping.wait()
            raise web.HTTPServiceUnavailable(text="pod stopped\n")
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        body = self.page().encode()
        if fault == "truncated":
            return await _send_truncated(request, body)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def _send_truncated(request: web.Request, body: bytes) -> web.StreamResponse:
    """Announce the whole body, send half of it, then drop the connection."""
    resp = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE})
    resp.content_length = len(body)
    await resp.prepare(request)
    await resp.write(body[: len(body) // 2])
    transport = request.transport
    if transport is not None:
        transport.close()
    return resp


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError(f"could not read the bound port from {runner.addresses!r}")
