"""Demand forecaster: robust damped Holt-Winters with a calibrated one-sided upper bound.

Pure: no I/O, no clock, no asyncio. One module per part, each importing only the ones listed
before it (``state.py`` names the forecaster for its types only):

* ``smoother.py``: the mean. ``Smoother`` keeps the level, the damped trend, the seasons and
  the error scales, and updates them in O(1) per reading, robust to bursts and following
  level shifts; ``SmoothingParams`` are its parameters.
* ``conformal.py``: the upper bound. ``ConformalBound`` scores each reading against the band
  centres made for it earlier and keeps, per horizon bucket, a sliding window of the
  normalised errors, whose conformal quantile sets the width of the band.
* ``fit.py``: the refit. ``ReplayHistory`` keeps the recent readings and checkpoints of the
  smoother; ``best_params`` replays them with trial parameters and keeps the best only if it
  also wins on the held-out last day.
* ``state.py``: the whole state as JSON-safe data and back (versioned).
* ``forecaster.py``: ``DemandForecaster``, what the rest of the project uses, and its answer
  ``Forecast``. Each ``observe`` screens the reading (missing values, suspect zeros, gaps),
  scores it (``ConformalBound.score``), updates the smoother, keeps it in the
  ``ReplayHistory`` and records the new centres (``ConformalBound.record``); ``forecast``
  combines the smoother's mean with the bound; ``needs_refit``, ``fit_params``,
  ``set_params`` and ``refit`` run the refit.

Importers import each name from the module that defines it; this package re-exports nothing.
"""
