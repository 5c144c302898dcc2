"""The demo's day: a flat stretch, the daily ramp, a one-off burst, and the history before."""

from __future__ import annotations

import numpy as np

from scaler.commands.demo_trace import (
    BASE_RATE,
    BURST,
    HISTORY_DAYS,
    PEAK_RATE,
    RAMP_AT_S,
    START_S,
    demo_day,
)


def test_the_hour_has_flat_demand_a_ramp_and_a_burst():
    day = demo_day(0, 3600.0)
    rate, minutes = day.played.rate, day.played.start_s / 60
    before = rate[minutes < (RAMP_AT_S - START_S) / 60]  # the burst is 3 of these 20 minutes
    assert abs(float(np.median(before)) - BASE_RATE) < 0.1 * BASE_RATE
    burst_at = (BURST[0] - START_S) / 60
    in_burst = rate[(minutes >= burst_at) & (minutes < burst_at + BURST[1] / 60)]
    assert burst_at + BURST[1] / 60 < (RAMP_AT_S - START_S) / 60  # in the flat stretch
    assert float(in_burst.min()) > BASE_RATE * 1.1  # on top of it
    assert float(rate[-1]) > 0.8 * PEAK_RATE


def test_the_history_ends_where_the_hour_begins_and_holds_every_day_s_ramp():
    day = demo_day(0, 3600.0)
    times, rates = np.array(day.history_times_s), np.array(day.history_rates)
    # each step labelled by its end, as Prometheus labels rate(x[5m])
    assert times[-1] == 0.0 and np.all(np.diff(times) == 300.0)
    assert len(times) == (HISTORY_DAYS * 86400 + START_S) // 300
    # A day earlier, the step from one hour after the hour began: the plateau.
    plateau = rates[np.isclose(times, -86400 + 3600 + 300)]
    assert float(plateau[0]) > 0.8 * PEAK_RATE


def test_a_flat_day_has_neither_ramp_nor_burst():
    rate = demo_day(0, 3600.0, flat=True).played.rate
    assert float(rate.max()) < 1.3 * BASE_RATE
