"""Demand forecaster: robust damped Holt-Winters with a calibrated one-sided upper bound.

Pure: no I/O, no clock, no asyncio. One module per part, each importing only the ones listed
before it (``state.py`` names the forecaster for its types only):

* ``smoother.py``: the mean. ``Smoother`` keeps the level, the damped trend, the seasons and
  the error scales, and updates them in O(1) per reading, robust to bursts and following
  level shifts; ``SmoothingParams`` are its parameters.
* ``conformal.py``: the upper bound. ``ConformalBound`` scores each reading against the band
  centres made for it earlier and keeps, per horizon bucket, a sliding window of the
  normalised errors, whose conformal quantile sets the width of the band.
* ``guard.py``: the naive guard. ``NaiveGuard`` scores, per horizon bucket, the model's
  departures from the last value against naive's errors and gives the weight of the model in
  the mean (0: naive's forecast, 1: the model's), so the mean is not worse than naive's on a
  series the model does not fit.
* ``fit.py``: the refit. ``ReplayHistory`` keeps the recent readings and checkpoints of the
  smoother; ``best_params`` replays them with trial parameters and keeps the best only if it
  also wins on the held-out last day.
* ``state.py``: the whole state as JSON-safe data and back (versioned).
* ``forecaster.py``: ``DemandForecaster``, what the rest of the project uses, and its answer
  ``Forecast``. Each ``observe`` screens the reading (missing values, suspect zeros, gaps),
  scores it (``ConformalBound.score``, ``NaiveGuard.score``), updates the smoother, keeps it in
  the ``ReplayHistory`` and records the new forecasts (``ConformalBound.record``,
  ``NaiveGuard.record``); ``forecast`` blends the smoother's mean with the last value by the
  guard's weight (in a new workload's first day, before any season, the mean is the last
  value and the smoother's robust level draws the band only) and draws the bound;
  ``needs_refit``, ``fit_params``, ``set_params`` and ``refit`` run the refit.

Importers import each name from the module that defines it; this package re-exports nothing.
"""
