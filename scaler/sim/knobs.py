"""Where each replay policy's knob is meaningful (no imports: the CLI's parser reads it).

`scaler bench` extends a knob's grid past its edge only within these; `scaler replay --knob`
refuses a value outside them.
"""

KNOB_RANGES: dict[str, tuple[float, float]] = {
    "reactive-kv": (1e-5, 1.0), "reactive-queue": (1e-3, 1e4), "reactive-concurrency": (0.1, 1e5),
    "reactive-rate": (1e-3, 1e5), "reactive-capacity": (0.2, 20.0), "predictive": (0.2, 20.0),
    "oracle": (1e-5, 0.95),
}
