"""Histograms and number formatting as prometheus_client writes them."""

from __future__ import annotations

import math

import pytest
from prometheus_client.utils import floatToGoString

from scaler.sim.emulation.exposition import Histogram, format_value


def test_histogram_and_value_formatting() -> None:
    hist = Histogram([0.1, 1.0])
    for value in (0.05, 0.1, 0.5, 3.0):
        hist.observe(value)
    hist.observe(0.7, 2)
    assert hist.cumulative() == (2.0, 5.0, 6.0)
    assert (hist.count, hist.sum) == (6.0, pytest.approx(5.05))
    with pytest.raises(ValueError, match="strictly ascending"):
        Histogram([1.0, 1.0])
    with pytest.raises(ValueError, match="must be finite"):
        Histogram([1.0, math.inf])
    for value in (0.0, 1.0, 0.001, 2560.0, 123456.0, 1.74262400557e9, 3.1e10, 1e17, -2.5,
                  math.inf, -math.inf, math.nan, 1048576.0):
        assert format_value(value) == floatToGoString(value)
