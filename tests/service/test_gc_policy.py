"""Long-lived state is frozen out of the collector's reach, and collected in full now and then."""

from __future__ import annotations

import asyncio
import gc

import pytest

from scaler.commands import serve as app


async def test_state_is_frozen_and_an_hourly_round_collects_in_full(monkeypatch):
    collected: list[int] = []
    monkeypatch.setattr(app, "FULL_COLLECT_EVERY", 3)
    monkeypatch.setattr(gc, "collect", lambda *a: collected.append(1) or 0)
    gc.unfreeze()
    kept = [[float(i)] * 100 for i in range(100)]  # some long-lived lists
    task = asyncio.create_task(app.keep_long_lived_state_out_of_gc(every_s=0))
    try:
        for _ in range(10):
            await asyncio.sleep(0)
        assert gc.get_freeze_count() >= len(kept)
        assert collected  # the third round unfroze and collected everything
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gc.unfreeze()
