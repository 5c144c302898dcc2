"""Fetch metrics pages over HTTP with aiohttp: bounded, timed, size-capped, explained failures.

Why a class of its own: the scaler scrapes every pod of every workload in a background loop.
One slow or broken pod must not stall the loop or eat memory, so every fetch is bounded by a
semaphore shared by all fetches (``max_concurrency``), a per-request timeout (the time spent
waiting for the semaphore does not count) and a body size cap. Every failure is a ScrapeError
whose ``kind`` the caller can count and whose message tells the operator what to check.

The request sends ``Accept: text/plain;version=0.0.4``: an OpenMetrics Accept header makes
recent prometheus_client servers (vLLM) rewrite ``vllm:`` names. Redirects are never followed
(a metrics page has no reason to move, and a redirect could lead anywhere); with a ``guard``
(``adapters.sources.guard``) a URL whose address the operator does not allow is never
requested (kind ``refused``).
"""

from __future__ import annotations

import asyncio
from typing import Literal

import aiohttp

from adapters.sources.guard import AddressGuard, AddressRefused

__all__ = ["ACCEPT", "PageFetcher", "ScrapeError", "ScrapeErrorKind"]

ACCEPT = "text/plain;version=0.0.4"
ScrapeErrorKind = Literal["connect", "timeout", "http_status", "too_large", "decode", "refused"]
_CHUNK = 64 * 1024


class ScrapeError(Exception):
    """A page could not be fetched; ``kind`` says which way, the message what to check."""

    def __init__(self, url: str, kind: ScrapeErrorKind, message: str) -> None:
        super().__init__(message)
        self.url = url
        self.kind: ScrapeErrorKind = kind


class PageFetcher:
    """GETs text pages through one shared aiohttp session, at most ``max_concurrency`` at once."""

    def __init__(self, *, session: aiohttp.ClientSession, timeout_s: float,
                 max_concurrency: int, max_bytes: int = 8 * 2**20,
                 guard: AddressGuard | None = None) -> None:
        """``guard``: also the resolver of ``session``'s connector, which checks names."""
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency!r}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes!r}")
        self._session = session
        self.timeout_s = timeout_s
        self._max_bytes = max_bytes
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._guard = guard

    async def fetch(self, url: str) -> str:
        """The page at ``url`` as text; raises ScrapeError on any failure."""
        async with self._semaphore:
            try:
                if self._guard is not None:
                    self._guard.check(url)
                async with asyncio.timeout(self.timeout_s):
                    body = await self._get(url)
            except AddressRefused as exc:
                raise _refused(url, exc) from None
            except TimeoutError:
                raise ScrapeError(url, "timeout", (
                    f"GET {url} timed out after {self.timeout_s} s; is the pod overloaded "
                    "or the timeout too short (scrape.timeout_s)?")) from None
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, AddressRefused):
                    raise _refused(url, exc.os_error) from None
                raise ScrapeError(url, "connect", (
                    f"GET {url} could not connect ({exc.os_error.strerror or exc}); is the pod "
                    "running and listening on that port?")) from exc
            except aiohttp.ClientError as exc:
                raise ScrapeError(url, "connect", (
                    f"GET {url} lost the connection before the whole page arrived "
                    f"({type(exc).__name__}: {exc}); did the pod crash or restart?")) from exc
        return _decode(url, body)

    async def _get(self, url: str) -> bytes:
        async with self._session.get(url, headers={"Accept": ACCEPT},
                                     allow_redirects=False) as resp:
            if resp.status != 200:
                moved = " (a redirect: never followed)" if 300 <= resp.status < 400 else ""
                raise ScrapeError(url, "http_status", (
                    f"GET {url} returned HTTP {resp.status} {resp.reason or ''}".rstrip()
                    + f"{moved}; is this the metrics port and path of a healthy pod?"))
            declared = resp.content_length
            if declared is not None and declared > self._max_bytes:
                raise self._too_large(url, f"declares {declared} bytes")
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.content.iter_chunked(_CHUNK):
                size += len(chunk)
                if size > self._max_bytes:
                    raise self._too_large(url, f"sent more than {self._max_bytes} bytes")
                chunks.append(chunk)
            return b"".join(chunks)

    def _too_large(self, url: str, what: str) -> ScrapeError:
        return ScrapeError(url, "too_large", (
            f"GET {url} {what}, over the {self._max_bytes}-byte limit; is this a metrics page, "
            "or did its series count explode?"))


def _refused(url: str, exc: AddressRefused) -> ScrapeError:
    return ScrapeError(url, "refused", f"GET {url} not sent: {exc.reason}")


def _decode(url: str, body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScrapeError(url, "decode", (
            f"GET {url} returned a body that is not UTF-8 (byte 0x{body[exc.start]:02x} at "
            f"offset {exc.start}); is this a Prometheus text page?")) from None
