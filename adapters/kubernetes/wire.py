"""Read the API server's JSON without trusting its shape.

The pod model, the failure classification and the reflector all read loosely typed JSON (a
field may be missing, null or of another type on a broken or foreign server); these readers
turn anything unexpected into "absent" so each caller decides what absent means. They live in
their own module because both ``pods`` and ``errors`` need them and ``pods`` imports ``errors``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["json_mapping", "mapping", "text"]


def mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def json_mapping(body: bytes) -> Mapping[str, Any]:
    try:
        return mapping(json.loads(body))
    except ValueError:
        return {}
