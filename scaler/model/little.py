"""How fast a pod really is, read from a pod that is not full: Little's law against the profile.

Saturation (``scaler.model.saturation``) proves a pod slower than its profile, but a pod
faster than its profile is never saturated by a planner that sizes from the profile, so it
would never teach that it could do more: the fleet stays as much too large as the profile is
too slow. A pod's page says it anyway: requests in flight (``running``) over requests
completed per second (``served``) is each request's time in the engine (Little's law), and
the profile predicts that time at that load. With the fluid fleet's batch law
(``scaler.model.queueing``), at ``y`` requests/s one replica runs

    running(y) = B(y) + y * pf,   B(y) = y * o * a0 / (1 - y * (pf + o * a1))

(``pf``: prefill seconds of the mean prompt; ``a0``, ``a1``: the decode step's fixed and
per-sequence cost at these lengths). A profile ``f`` times as fast divides every time by
``f``, so it runs at ``x`` requests/s what the profile runs at ``x / f``: solving
``running(y) = measured`` for ``y`` (a quadratic) gives ``f = x / y``.

Only where the answer is well posed: a batch well below its limit (near it, ``running``
barely moves with the rate) and at least one request in flight on average (below that, one
instant's gauge says little). Pure: no I/O, no clock.
"""

from __future__ import annotations

import math

from scaler.model.profile import ReplicaProfile

MIN_RUNNING = 1.0  # requests in flight at least, for the gauge to say something
FULL_BATCH = 0.8  # share of the batch limit above which the estimate is ill-posed


def speed_from_in_flight(profile: ReplicaProfile, served: float, running: float,
                         mean_prompt: float, mean_output: float) -> float | None:
    """How many times as fast as ``profile`` a replica is that completes ``served``
    requests/s with ``running`` in flight at these mean lengths; None where ill-posed."""
    p, o = max(mean_prompt, 1.0), max(mean_output, 1.0)
    if not (served > 0 and math.isfinite(served) and math.isfinite(running)):
        return None
    b_max = profile.max_batch(p, o)
    if not MIN_RUNNING <= running <= FULL_BATCH * b_max:
        return None
    pf = profile.prefill_s(p)
    a0 = profile.decode_step_base_s
    a1 = profile.step_per_seq_s + profile.decode_step_per_cached_token_s * (p + o / 2.0)
    c, d = pf + o * a1, o * a0
    # running (1 - y c) = y d + y pf (1 - y c), i.e.
    # pf c y^2 - (running c + d + pf) y + running = 0
    qa, qb = pf * c, running * c + d + pf
    disc = qb * qb - 4.0 * qa * running
    if disc < 0:
        return None
    y = (2.0 * running) / (qb + math.sqrt(disc))  # the smaller root, stable
    if not (y > 0 and y * c < 1.0):
        return None
    return served / y
