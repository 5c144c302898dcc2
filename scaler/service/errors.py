"""What an RPC about a workload can be answered instead of a decision, besides bad metadata
(``scaler.keda.metadata.MetadataError``, INVALID_ARGUMENT)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable


class Unavailable(Exception):
    """No trustworthy decision right now; the message says why and what to check."""


class NamesPending(Unavailable):
    """The trigger names hosts whose addresses are not known yet: nothing is registered until
    they are resolved and checked. ``wait()`` returns once they are (or failed)."""

    def __init__(self, message: str, wait: Callable[[], Awaitable[object]]) -> None:
        super().__init__(message)
        self.wait = wait


class LimitExceeded(Exception):
    """Past an operator limit (``setting``): nothing was registered or fetched.

    RESOURCE_EXHAUSTED over gRPC; ``http_status`` on the metrics-api route (413: this call
    carries too much, 429: the scaler holds as many workloads as it may).
    """

    def __init__(self, setting: str, message: str, http_status: int) -> None:
        super().__init__(message)
        self.setting = setting
        self.http_status = http_status
