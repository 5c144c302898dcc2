"""An emulated Prometheus: one series behind ``/api/v1/query_range``, on loopback.

Why: the service warm-starts each new workload's forecaster from Prometheus (``prometheus.url``
and a history query); the demo shows a forecaster that has seen a week, and must get there
through that real path (range query, reader, warm start) rather than by handing the
forecaster numbers. Every query is answered with the same series (the demo's history), the
points inside the asked range; nothing else of the API exists.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

__all__ = ["EmulatedPrometheus"]


class EmulatedPrometheus:
    """A ``query_range`` endpoint serving ``(times_s, values)`` (Unix seconds) for any query."""

    def __init__(self, times_s: Sequence[float], values: Sequence[float], *,
                 host: str = "127.0.0.1") -> None:
        if len(times_s) != len(values):
            raise ValueError(f"{len(times_s)} times but {len(values)} values")
        self.points = sorted(zip(times_s, values, strict=True))
        self.host = host
        self.queries: list[str] = []
        self._runner: web.AppRunner | None = None
        self._port = 0

    @property
    def url(self) -> str:
        if self._port == 0:
            raise RuntimeError("EmulatedPrometheus.url is only known after start()")
        return f"http://{self.host}:{self._port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v1/query_range", self._query_range)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _query_range(self, request: web.Request) -> web.Response:
        try:
            start, end = float(request.query["start"]), float(request.query["end"])
        except (KeyError, ValueError):
            return web.json_response({"status": "error", "errorType": "bad_data",
                                      "error": "start and end must be numbers"}, status=400)
        self.queries.append(request.query.get("query", ""))
        values = [[t, repr(v)] for t, v in self.points if start <= t <= end]
        result = [{"metric": {}, "values": values}] if values else []
        return web.json_response({"status": "success",
                                  "data": {"resultType": "matrix", "result": result}})
