"""The emulated Prometheus answers the service's own range-query reader."""

from __future__ import annotations

import aiohttp

from adapters.sources.prometheus import query_range
from scaler.sim.emulation.prometheus import EmulatedPrometheus


async def test_range_query_returns_the_points_inside_the_range():
    prometheus = EmulatedPrometheus([100.0, 400.0, 700.0, 1000.0], [1.0, 2.0, 3.0, 4.0])
    await prometheus.start()
    try:
        async with aiohttp.ClientSession() as session:
            series = await query_range(session, prometheus.url, "sum(rate(x[5m]))",
                                       start_s=300.0, end_s=800.0, step_s=300.0)
    finally:
        await prometheus.stop()
    assert series.times_s == (400.0, 700.0) and series.values == (2.0, 3.0)
    assert prometheus.queries == ["sum(rate(x[5m]))"]
