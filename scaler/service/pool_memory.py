"""What a node pool must remember across restarts and failovers, as the Lease keeps it.

A new process, or a replica that just took the Lease, knows only the workloads KEDA has asked
*it* about, and its monotonic clock starts anew: on its own it would see the nodes under every
other workload as unused and no change ever made. So the leader keeps, for each pool, in one
annotation (``ANNOTATION``) on the node-actuation Lease that it renews anyway:

- ``lastChange``: when the pool's node count last changed, as UTC wall-clock time (monotonic
  clocks differ between processes), so cooldowns go on across a restart;
- ``workloads``: the workloads (``namespace/name/metric``) whose plans counted toward it, so the
  next leader holds scale-down until they are back (``scaler.model.nodes.warm_up``);
  ``leftOff``: how many more did, beyond what fits in ``BUDGET_BYTES`` (each unknown one keeps
  the warm-up at its longest).

Only the scaler's own ServiceAccount may write the Lease (deploy/base/rbac.yaml); a value that
does not read as above is still treated as "some workloads unknown", never as "none".
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ANNOTATION", "BUDGET_BYTES", "UNKNOWN", "PoolRecord", "decode", "encode"]

ANNOTATION = "llm-predictive-scaler/node-pools"
BUDGET_BYTES = 64 * 1024  # of the 256 KiB the API server allows all of an object's annotations


@dataclass(frozen=True)
class PoolRecord:
    """One pool as the Lease remembers it."""

    last_change_wall: float | None = None  # seconds since the epoch
    workloads: frozenset[str] = frozenset()
    left_off: int = 0  # workloads that counted too but are not listed (or cannot be read)


UNKNOWN = PoolRecord(left_off=1)  # an unreadable record: someone may be missing


def encode(records: Mapping[str, PoolRecord], budget: int = BUDGET_BYTES) -> str:
    """The annotation's value: compact JSON, pools and names sorted; names beyond an even share
    of ``budget`` per pool are counted in ``leftOff`` instead of listed."""
    share = budget // max(1, len(records))
    document: dict[str, dict[str, Any]] = {}
    for name in sorted(records):
        record = records[name]
        listed: list[str] = []
        used = len(json.dumps(name)) + 64  # the pool's own keys and a timestamp
        for workload in sorted(record.workloads):
            used += len(json.dumps(workload)) + 1
            if used > share:
                break
            listed.append(workload)
        entry: dict[str, Any] = {"workloads": listed}
        if record.last_change_wall is not None:
            entry["lastChange"] = _rfc3339(record.last_change_wall)
        left_off = record.left_off + len(record.workloads) - len(listed)
        if left_off:
            entry["leftOff"] = left_off
        document[name] = entry
    return json.dumps(document, separators=(",", ":"), sort_keys=True)


def decode(text: str | None) -> tuple[dict[str, PoolRecord], str | None]:
    """The records an annotation holds, and what was wrong with it (None: nothing).

    Absent: no pool has a record (the first start ever). A pool whose entry cannot be read gets
    ``UNKNOWN``; a value that is no JSON object at all is the caller's to treat as unknown for
    every pool (the problem says so)."""
    if text is None:
        return {}, None
    try:
        document = json.loads(text)
    except ValueError as exc:
        return {}, f"annotation {ANNOTATION} is not JSON ({exc})"
    if not isinstance(document, dict):
        return {}, f"annotation {ANNOTATION} is not a JSON object"
    records: dict[str, PoolRecord] = {}
    problems: list[str] = []
    for name, entry in document.items():
        try:
            records[str(name)] = _record(entry)
        except (TypeError, ValueError) as exc:
            records[str(name)] = UNKNOWN
            problems.append(f"pool {name}: {exc}")
    return records, ("; ".join(problems) or None)


def _record(entry: Any) -> PoolRecord:
    if not isinstance(entry, dict):
        raise TypeError("not a JSON object")
    workloads = entry.get("workloads", [])
    if not isinstance(workloads, list) or not all(isinstance(w, str) for w in workloads):
        raise TypeError("workloads is not a list of names")
    left_off = entry.get("leftOff", 0)
    if isinstance(left_off, bool) or not isinstance(left_off, int) or left_off < 0:
        raise ValueError(f"leftOff {left_off!r} is not a whole number >= 0")
    changed = entry.get("lastChange")
    if changed is not None and not isinstance(changed, str):
        raise TypeError("lastChange is not a timestamp")
    when = None if changed is None else datetime.datetime.fromisoformat(changed)
    if when is not None and when.tzinfo is None:
        raise ValueError(f"lastChange {changed!r} has no time zone")
    return PoolRecord(None if when is None else when.timestamp(), frozenset(workloads), left_off)


def _rfc3339(wall_s: float) -> str:
    """Whole seconds, rounded up: a cooldown read back never comes out shorter."""
    moment = datetime.datetime.fromtimestamp(math.ceil(wall_s), tz=datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
