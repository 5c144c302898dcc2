"""The bearer token of the metrics-api route: the file ``server.http_api_token_file`` names.

Whoever may call that route sets a workload's trigger metadata, so it answers only a caller
holding this token (KEDA's ``authMode: bearer``, the token coming from a Secret through a
TriggerAuthentication). The file is checked whenever the config loads (a missing Secret fails
``scaler validate-config``, not the next restart) and read once at start: restart to rotate.
Messages name the key and the path, never the contents; the token has no repr.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from pathlib import Path

KEY = "http_api_token_file"
# What RFC 6750's b64token allows, and more: any visible ASCII; a header cannot carry less.
_VISIBLE_ASCII = frozenset(range(0x21, 0x7F))


@dataclass(frozen=True)
class ApiToken:
    """The token the route's callers must send as ``Authorization: Bearer <token>``."""

    value: bytes = field(repr=False)

    def matches(self, authorization: str | None) -> bool:
        """True if the header is ``Bearer <this token>`` (scheme in any case, RFC 7235).

        The comparison takes the same time wherever the first difference is, so a caller
        cannot find the token a byte at a time by timing the answers.
        """
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        given = credentials.strip().encode("utf-8", "surrogatepass")
        # compare_digest runs even on a wrong scheme, so the scheme is not timed apart either.
        same = hmac.compare_digest(given, self.value)
        return same and scheme.lower() == "bearer"


def read_api_token(file: str, path: str) -> tuple[ApiToken | None, list[str]]:
    """The token in ``file`` (None when unset), or the problems, each naming ``path`` + key."""
    if not file:
        return None, []
    key = f"{path}{KEY}"
    try:
        data = Path(file).read_bytes().strip()
    except OSError as exc:
        return None, [f"{key}: cannot read {file}: {exc.strerror or exc} (mount the Secret "
                      "there or correct the path)"]
    if not data:
        return None, [f"{key}: {file} holds no token (the file is empty or only whitespace): "
                      "put the token in the Secret, e.g. the output of openssl rand -hex 32"]
    if not set(data) <= _VISIBLE_ASCII:
        return None, [f"{key}: {file} holds characters an HTTP header cannot carry as a bearer "
                      "token (spaces, line breaks or non-ASCII inside it): use one line of "
                      "visible ASCII, e.g. the output of openssl rand -hex 32"]
    return ApiToken(data), []
