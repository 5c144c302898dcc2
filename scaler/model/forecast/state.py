"""A ``DemandForecaster``'s whole state as JSON-safe data, and back.

The service copies a forecaster this way (to warm-start it, or to refit on the copy in a
thread, without touching the live one), and the state can outlive a restart. The format is
versioned and a state of another version is refused rather than guessed at; missing readings
(NaN) are stored as None, so the data passes ``json.dumps(allow_nan=False)``.

This is the forecaster's own persistence, kept apart so that the format is in one place: it
reads and writes the forecaster's private state, which no other module does.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from scaler.model.forecast.conformal import ConformalBound, PendingCentres
from scaler.model.forecast.guard import GuardPending, NaiveGuard
from scaler.model.forecast.smoother import SLOW_RATE, Smoother, SmoothingParams

if TYPE_CHECKING:
    from scaler.model.forecast.forecaster import DemandForecaster

_FormatVersion = 6
"""2: the naive guard, the last usable reading and the weekly season's gathered first week.
3: ``arrivals_per_unit`` in the config. 4: the count of errors in the error scales
(``scale_errors``). 5: ``zero_holes`` in the config. 6: no ``zero_trust_s`` (a suspect zero
is missing until ``zero_forget_s``; older states' ``zero_trust_s`` is ignored). A version-2
state is read with ``arrivals_per_unit`` at 1 (every version-2 forecaster counted its
readings as requests/s); version 2 and 3 states with their scales past their warm-up
(``SCALES_WARM``); states before version 5 with ``zero_holes`` on (every forecaster before
it took improbable zeros for holes); older ones are refused."""
_READ_AS_CURRENT = {2: {"arrivals_per_unit": 1.0, "zero_holes": True},
                    3: {"zero_holes": True}, 4: {"zero_holes": True}, 5: {}}
"""Versions still read, and the config they lack."""
SCALES_WARM = round(1.0 / SLOW_RATE)
"""Errors after which both error scales are exponentially weighted (the count a state older
than version 4 is read with)."""


def forecaster_to_dict(f: DemandForecaster) -> dict[str, Any]:
    """The whole state as JSON-safe data (no NaN: missing values are None)."""
    return {
        "version": _FormatVersion,
        "config": _config_dict(f),
        "params": {"alpha": f._params.alpha, "beta": f._params.beta,
                   "phi": f._params.phi, "gammas": list(f._params.gammas)},
        "core": _core_to_dict(f._core),
        "windows": [list(w.order) for w in f._bound.windows],
        "ring": [None if s is None else [s.k, s.centres, s.scale] for s in f._bound.ring],
        "guard": _guard_to_dict(f._guard),
        "naive": f._naive,
        "last_k": f._last_k,
        "zero_run": f._zero_run,
        "history": [[k, None if math.isnan(x) else x] for k, x in f._replay.readings],
        "last_refit_k": f._last_refit_k,
        "checkpoints": [[k, _core_to_dict(c)] for k, c in f._replay.checkpoints],
    }


def _config_dict(f: DemandForecaster) -> dict[str, Any]:
    return {"step_s": f.step_s, "seasons_s": list(f.seasons_s),
            "quantile": f.quantile, "max_horizon_s": f.max_horizon_s,
            "zero_forget_s": f.zero_forget_s,
            "history_s": f.history_s, "refit_every_s": f.refit_every_s,
            "fit_horizon_s": f.fit_horizon_s, "guard": f.guard,
            "arrivals_per_unit": f.arrivals_per_unit, "zero_holes": f.zero_holes}


def forecaster_from_dict(cls: type[DemandForecaster], d: dict[str, Any]) -> DemandForecaster:
    """Rebuild a forecaster saved by ``to_dict``."""
    version = d.get("version")
    if version != _FormatVersion and version not in _READ_AS_CURRENT:
        raise ValueError(f"forecaster state has version {version!r}. "
                         f"Expected {_FormatVersion}.")
    f = _from_config(cls, _READ_AS_CURRENT.get(version, {}) | d["config"])
    p = d["params"]
    f._params = SmoothingParams(p["alpha"], p["beta"], p["phi"], tuple(p["gammas"]))
    f._core = _core_from_dict(d["core"], f._periods, f._kernels, f._params)
    _load_bound(f._bound, d["windows"], d["ring"])
    _load_guard(f._guard, d["guard"])
    f._naive = None if d["naive"] is None else float(d["naive"])
    f._last_k, f._zero_run = d["last_k"], int(d["zero_run"])
    f._replay.readings.extend((int(k), math.nan if x is None else float(x))
                              for k, x in d["history"])
    f._last_refit_k = d["last_refit_k"]
    f._replay.checkpoints.extend(
        (int(k), _core_from_dict(c, f._periods, f._kernels, f._params))
        for k, c in d["checkpoints"])
    return f


def _from_config(cls: type[DemandForecaster], cfg: dict[str, Any]) -> DemandForecaster:
    return cls(cfg["step_s"], tuple(cfg["seasons_s"]), cfg["quantile"],
               max_horizon_s=cfg["max_horizon_s"], zero_forget_s=cfg["zero_forget_s"],
               history_s=cfg["history_s"],
               refit_every_s=cfg["refit_every_s"], fit_horizon_s=cfg["fit_horizon_s"],
               guard=bool(cfg["guard"]), arrivals_per_unit=cfg["arrivals_per_unit"],
               zero_holes=bool(cfg["zero_holes"]))


def _load_bound(bound: ConformalBound, windows: list[list[float]],
                ring: list[list[Any] | None]) -> None:
    for window, zs in zip(bound.windows, windows, strict=True):
        window.order = deque(float(z) for z in zs)
        window.sorted = sorted(window.order)
    bound.ring = [None if s is None
                  else PendingCentres(int(s[0]), [float(c) for c in s[1]], float(s[2]))
                  for s in ring]


def _guard_to_dict(guard: NaiveGuard) -> dict[str, Any]:
    return {"ed": guard.ed, "dd": guard.dd, "abs_e": guard.abs_e, "counts": guard.counts,
            "ring": [None if p is None else [p.k, p.naive, p.departures] for p in guard.ring]}


def _load_guard(guard: NaiveGuard, d: dict[str, Any]) -> None:
    n = len(guard.buckets)
    for key in ("ed", "dd", "abs_e"):
        values = [float(v) for v in d[key]]
        if len(values) != n:
            raise ValueError(f"forecaster state has {len(values)} guard buckets. Expected {n}.")
        setattr(guard, key, values)
    guard.counts = [int(c) for c in d["counts"]]
    guard.ring = [None if p is None
                  else GuardPending(int(p[0]), float(p[1]), [float(x) for x in p[2]])
                  for p in d["ring"]]


def _core_to_dict(core: Smoother) -> dict[str, Any]:
    return {
        "level": core.level, "trend": core.trend, "ready": core.ready,
        "first": [[k, x] for k, x in core.first], "first_k": core.first_k,
        "scale_slow": core.scale_slow, "scale_fast": core.scale_fast,
        "scale_errors": core.scale_errors, "run": core.run,
        "last_resid": core.last_resid,
        "seasons": [{"values": list(s.values), "learning": s.learning,
                     "gathered": None if s.gathered is None else [list(a) for a in s.gathered]}
                    for s in core.seasons],
    }


def _core_from_dict(d: dict[str, Any], periods: Sequence[int],
                    kernels: Sequence[tuple[tuple[int, float], ...]],
                    params: SmoothingParams) -> Smoother:
    core = Smoother(periods, kernels, params)
    core.level = None if d["level"] is None else float(d["level"])
    core.trend, core.ready = float(d["trend"]), bool(d["ready"])
    core.first = [(int(k), float(x)) for k, x in d["first"]]
    core.first_k = d["first_k"]
    core.scale_slow, core.scale_fast = float(d["scale_slow"]), float(d["scale_fast"])
    core.scale_errors = int(d.get("scale_errors", SCALES_WARM))
    core.run, core.last_resid = int(d["run"]), float(d["last_resid"])
    for season, s in zip(core.seasons, d["seasons"], strict=True):
        season.values = array("d", (float(v) for v in s["values"]))
        season.learning = bool(s["learning"])
        gathered = s["gathered"]
        if gathered is not None:
            season.gathered = (array("d", gathered[0]), array("d", gathered[1]))
    return core
