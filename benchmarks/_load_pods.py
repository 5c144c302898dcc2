"""Many emulated vLLM pods served from one aiohttp app: the pod side of ``load_scale.py``.

One process answers ``GET /pod/<i>/metrics`` for thousands of pods on one loopback port, so the
scaler's scraping can be loaded at fleet scale from outside its process. Rendering a page costs
about 5 ms, far too much to do per request at 1,600 pages/s, so pages are rendered ahead:

- a few engine "shapes" (different queue, KV-cache use and request rate), each advanced
  ``refresh_s`` seconds of traffic at a time and rendered once per step (``variants`` steps),
  so every pod's counters and histograms grow and the scaler sees non-zero rates;
- each rendered page is kept split on its model name and served as
  ``model_name.join(parts)``: a memory copy per request, so every workload has its own
  ``model_name`` label (as distinct deployments do) without a render per workload;
- pod ``i`` serves shape ``i % shapes`` at step ``(now - start) // refresh_s``; after the last
  step it keeps serving the last page (counters stop; size the run with ``variants``).

Several processes can share the port (``SO_REUSEPORT``; the kernel spreads connections).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from multiprocessing.connection import Connection

from aiohttp import web

from scaler.sim.emulation.engine_state import EngineState
from scaler.sim.emulation.vllm_metrics import DEFAULT_MODEL, render_page

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
POD_PATH = "/pod/{}/metrics"
PODS_NICE = 5  # lower CPU priority than the scaler and KEDA: in a cluster pods run elsewhere


def model_name(workload: int) -> str:
    """The served model name of workload ``workload`` (the ``model_name`` label)."""
    return f"bench/model-{workload:04d}"


def _engine(shape: int, rng: random.Random) -> EngineState:
    return EngineState(running=8 + 5 * shape, waiting=shape % 3,
                       kv_cache_usage=0.2 + 0.08 * shape,
                       prefix_cache_queries=1e6 * (1 + shape), prefix_cache_hits=3e5 * (1 + shape))


def _advance(engine: EngineState, shape: int, seconds: float, rng: random.Random) -> None:
    """``seconds`` of traffic at 2-9 requests/s: counters and histograms grow."""
    for _ in range(round(seconds * (2 + shape))):
        prompt, output = rng.randint(200, 2000), rng.randint(20, 600)
        queue = rng.uniform(0.0, 0.05 * (shape % 3))
        ttft = queue + prompt / 20000.0
        engine.record_step(prompt, output)
        engine.record_request(prompt_tokens=prompt, generation_tokens=output, queue_s=queue,
                              ttft_s=ttft, e2e_s=ttft + 0.012 * output, max_tokens=2048)
    engine.prefix_cache_queries += 4000 * seconds
    engine.prefix_cache_hits += 1500 * seconds


def render_variants(shapes: int, variants: int, refresh_s: float,
                    engines: int) -> list[list[list[bytes]]]:
    """parts[shape][step]: the page split on the default model name."""
    rng = random.Random(17)
    marker = DEFAULT_MODEL.encode()
    out: list[list[list[bytes]]] = []
    for shape in range(shapes):
        states = [_engine(shape, rng) for _ in range(engines)]
        for state in states:
            _advance(state, shape, 120.0, rng)  # some history before the first page
        steps = []
        for _ in range(variants):
            steps.append(render_page(states).encode().split(marker))
            for state in states:
                _advance(state, shape, refresh_s, rng)
        out.append(steps)
    return out


class PodFarm:
    """The aiohttp app serving every pod's page from the pre-rendered parts."""

    def __init__(self, workloads: int, pods_per_workload: int,
                 parts: list[list[list[bytes]]], refresh_s: float) -> None:
        self.pods = workloads * pods_per_workload
        self.pods_per_workload = pods_per_workload
        self.names = [model_name(w).encode() for w in range(workloads)]
        self.parts = parts
        self.refresh_s = refresh_s
        self.started = time.monotonic()
        self.served = 0
        self.headers = {"Content-Type": CONTENT_TYPE}

    async def handle(self, request: web.Request) -> web.Response:
        try:
            pod = int(request.match_info["pod"])
        except ValueError:
            raise web.HTTPNotFound() from None
        if not 0 <= pod < self.pods:
            raise web.HTTPNotFound()
        steps = self.parts[pod % len(self.parts)]
        step = min(len(steps) - 1, int((time.monotonic() - self.started) / self.refresh_s))
        self.served += 1
        body = self.names[pod // self.pods_per_workload].join(steps[step])
        return web.Response(body=body, headers=self.headers)


def serve_pods(conn: Connection, workloads: int, pods_per_workload: int, engines: int,
               variants: int, refresh_s: float, port: int) -> None:
    """Process entry point: render, listen on 127.0.0.1:``port`` (0: pick one, SO_REUSEPORT),
    send the bound port, then answer ``"stats"`` with (pages served, CPU seconds) until
    ``"stop"``."""
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us over the pipe
    os.nice(PODS_NICE)  # they stand for other machines: the scaler's processes go first
    parts = render_variants(8, variants, refresh_s, engines)
    asyncio.run(_serve(conn, PodFarm(workloads, pods_per_workload, parts, refresh_s), port))


async def _serve(conn: Connection, farm: PodFarm, port: int) -> None:
    app = web.Application()
    app.router.add_get("/pod/{pod}/metrics", farm.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, reuse_port=True, backlog=1024)
    await site.start()
    bound = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    loop = asyncio.get_running_loop()
    conn.send(int(bound))
    try:
        while True:
            message = await loop.run_in_executor(None, conn.recv)
            if message == "stop":
                break
            conn.send((farm.served, time.process_time()))
    finally:
        await runner.cleanup()
