"""Where the scaler may connect: every address of every page it fetches, checked first.

The URLs the scaler fetches come from ScaledObjects, which anyone allowed to create one
writes. Checking a URL's text once is not enough: a name may resolve elsewhere later (DNS
rebinding), so the check sits where connections are made. ``AddressGuard`` is the connector's
resolver (``aiohttp.TCPConnector(resolver=guard, use_dns_cache=False)``): a name is resolved
here, every address it has is checked with ``refusal`` (the operator's networks), and one
refused address refuses the name, before any socket is opened. aiohttp resolves no literal
address, and reuses kept-alive connections without resolving, so ``check`` is also called on
each URL before its request (``PageFetcher`` does), against the settings of the moment.

Names are resolved with ``lookup`` (by default the system resolver in a worker thread, so the
event loop never waits on DNS; tests pass a table), cached ``ttl_s`` seconds, a failure
``FAILURE_TTL_S``, looked up once however many wait. ``cached`` answers from memory without
waiting, starting a lookup when the answer is missing or old: the service refuses a new
workload's names before registering it and re-checks them at every call from there.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

Address = IPv4Address | IPv6Address
Lookup = Callable[[str], Awaitable[Sequence[str]]]
Refusal = Callable[[Address], "str | None"]  # why an address is refused, None if allowed

FAILURE_TTL_S = 5.0  # a name that failed to resolve is not asked again sooner
LOOKUP_TIMEOUT_S = 5.0
_NUMERIC = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV


class AddressRefused(OSError):
    """A connection the guard does not allow: no socket was opened."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(reason)
        self.host = host
        self.reason = reason


async def system_lookup(host: str) -> Sequence[str]:
    """The host's addresses from the system resolver (getaddrinfo in a worker thread)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


@functools.lru_cache(maxsize=65536)  # every fetch asks; URLs repeat every interval
def host_of(url: str) -> str | None:
    """The host aiohttp would connect to for ``url`` (IPv6 without brackets)."""
    try:
        return URL(url).host
    except ValueError:
        return None


@functools.lru_cache(maxsize=65536)
def literal(host: str) -> Address | None:
    """``host`` as an IP address, None when it is a name."""
    try:
        return ip_address(host.strip("[]"))
    except ValueError:
        return None


@dataclass
class _Resolved:
    addresses: tuple[Address, ...] | None  # None: the last lookup failed (``error``)
    error: str | None
    at_s: float


class AddressGuard(AbstractResolver):
    def __init__(self, refusal: Refusal, *, lookup: Lookup = system_lookup,
                 clock: Callable[[], float] = time.monotonic, ttl_s: float = 30.0,
                 max_names: int = 4096) -> None:
        self.refusal = refusal
        self._lookup = lookup
        self._clock = clock
        self.ttl_s = ttl_s
        self._max_names = max_names
        self._names: dict[str, _Resolved] = {}
        self._good: dict[str, tuple[Address, ...]] = {}  # last addresses that resolved
        self._lookups: dict[str, asyncio.Task[tuple[Address, ...]]] = {}

    def check(self, url: str) -> None:
        """Raise AddressRefused if ``url``'s host is refused now: a literal address, or a
        name by its last known addresses (a kept-alive connection is not resolved again; a
        new one is, by ``resolve``)."""
        host = host_of(url)
        if host is None:
            return
        address = literal(host)
        addresses = (address,) if address is not None else self.cached(host)
        reason = None if addresses is None else self.problem(host, addresses)
        if reason is not None:
            raise AddressRefused(host, reason)

    def problem(self, host: str, addresses: Sequence[Address]) -> str | None:
        """Why ``host`` (with these addresses) is refused, None if every address is allowed."""
        for address in addresses:
            reason = self.refusal(address)
            if reason is not None:
                return reason if literal(host) is not None else f"{host} resolves to {reason}"
        return None

    def cached(self, host: str) -> tuple[Address, ...] | None:
        """The name's last known addresses without waiting (None: none yet); a lookup is
        started when they are missing or older than ``ttl_s``."""
        entry = self._names.get(host)
        if entry is None or self._clock() - entry.at_s > self._ttl(entry):
            self._start(host)
        return self._good.get(host)

    def failure(self, host: str) -> str | None:
        """Why the name cannot be resolved, when it never could (else None)."""
        entry = self._names.get(host)
        if entry is None or entry.addresses is not None or host in self._good:
            return None
        return entry.error

    async def addresses(self, host: str) -> tuple[Address, ...]:
        """The name's addresses, looked up if not known within ``ttl_s``; OSError if it
        cannot be resolved."""
        entry = self._names.get(host)
        if entry is not None and self._clock() - entry.at_s <= self._ttl(entry):
            if entry.addresses is None:
                raise OSError(entry.error)
            return entry.addresses
        return await asyncio.shield(self._start(host))

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        """aiohttp's resolver: the allowed addresses of ``host``, or AddressRefused."""
        addresses = await self.addresses(host)
        reason = self.problem(host, addresses)
        if reason is not None:
            raise AddressRefused(host, reason)
        wanted = {socket.AF_INET: 4, socket.AF_INET6: 6}.get(family)
        results: list[ResolveResult] = [
            {"hostname": host, "host": str(a), "port": port, "proto": 0, "flags": _NUMERIC,
             "family": socket.AF_INET if a.version == 4 else socket.AF_INET6}
            for a in addresses if wanted is None or a.version == wanted]
        if not results:
            raise OSError(f"{host} has no IPv{wanted} address")
        return results

    async def close(self) -> None:
        for task in self._lookups.values():
            task.cancel()

    def _ttl(self, entry: _Resolved) -> float:
        return self.ttl_s if entry.addresses is not None else FAILURE_TTL_S

    def _start(self, host: str) -> asyncio.Task[tuple[Address, ...]]:
        task = self._lookups.get(host)
        if task is None:
            task = asyncio.ensure_future(self._look_up(host))
            self._lookups[host] = task
            task.add_done_callback(lambda done: self._finished(host, done))
        return task

    def _finished(self, host: str, task: asyncio.Task[tuple[Address, ...]]) -> None:
        if self._lookups.get(host) is task:
            del self._lookups[host]
        if not task.cancelled():
            task.exception()  # a background refresh's failure is remembered, not raised

    async def _look_up(self, host: str) -> tuple[Address, ...]:
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                found = tuple(ip_address(a) for a in await self._lookup(host))
            if not found:
                raise OSError(f"{host} has no address")
        except (OSError, ValueError, TimeoutError) as exc:
            error = f"cannot resolve {host}: {exc or type(exc).__name__}"
            self._remember(host, _Resolved(None, error, self._clock()))
            raise OSError(error) from None
        self._remember(host, _Resolved(found, None, self._clock()))
        self._good[host] = found
        return found

    def _remember(self, host: str, entry: _Resolved) -> None:
        self._names.pop(host, None)
        self._names[host] = entry
        while len(self._names) > self._max_names:
            oldest = next(iter(self._names))
            del self._names[oldest]
            self._good.pop(oldest, None)
