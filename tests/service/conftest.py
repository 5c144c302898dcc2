"""Service test parts: a dcgm-exporter page the test sets."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest


@pytest.fixture
async def dcgm() -> AsyncIterator[tuple[str, dict[str, float]]]:
    """A dcgm-exporter page for pod ns/vllm-0 whose engine activity the test sets."""
    from aiohttp import web

    state = {"active": 0.95}

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=(
            "# TYPE DCGM_FI_PROF_GR_ENGINE_ACTIVE gauge\n"
            'DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="0",UUID="GPU-1",Hostname="n1",'
            f'namespace="ns",pod="vllm-0"}} {state["active"]}\n'), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/metrics", state
    await runner.cleanup()
