"""Virtual time for tests that run several loops at once, each at its own pace.

``VirtualTime`` is a clock (call it, or ``wall()`` / ``monotonic()``) and a ``sleep``. Loops
started with ``spawn`` are *participants*; ``run_until`` moves time to the next timer only once
every participant is blocked: waiting on a timer of this clock with no Kubernetes request of
its own on the wire, or waiting on a request the test holds. So loops interleave as their
periods and the held requests make them (never in lock-step) and the run is the same every
time, in no real time.

Kubernetes requests go through ``connect``-ed ``ApiClient`` s. ``network`` decides, per request,
how long it is held *before it leaves the client* (a connection being re-established through a
flaky network, a paused process: nothing has reached the API server, so a request cancelled
meanwhile never arrives). ``hold`` holds a request *at the server*, after it arrived:
the API server answers it late (and applies it then, whatever the client did meanwhile).
``sender`` says which participant sent a request the server sees; ``arrived`` records it in
``sent`` with when it was handled.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio.client import ApiClient

REQUEST_HEADER = "X-Test-Request"
_participant: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "participant", default=None)
_STEADY = 5  # loop iterations the "all blocked" state must hold: wake-up chains settle

Network = Callable[[str | None, str, str], float]  # (who, method, url) -> seconds held


@dataclass(frozen=True)
class Sent:
    who: str | None
    method: str
    url: str
    at: float  # when it reached the server


class VirtualTime:
    def __init__(self, start: float = 1_764_000_000.0) -> None:
        self.now = start
        self.network: Network = lambda who, method, url: 0.0
        self.sent: list[Sent] = []
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self._timers: list[tuple[float, int, asyncio.Future[None], str | None]] = []
        self._seq = itertools.count()
        self._waiting: Counter[str | None] = Counter()  # pending timers per participant
        self._on_wire: dict[str | None, set[int]] = {}  # requests sent, not answered yet
        self._held: set[int] = set()  # requests the server holds
        self._who: dict[int, str | None] = {}
        self._ids = itertools.count(1)

    # -- the clock ---------------------------------------------------------------------------

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now - 1_700_000_000.0  # another origin: a mix-up of the two shows

    async def sleep(self, seconds: float) -> None:
        who = _participant.get()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + max(0.0, seconds), next(self._seq), future, who))
        self._waiting[who] += 1
        try:
            await future
        finally:
            if future.cancelled():  # a fired timer was counted off when it fired
                self._waiting[who] -= 1

    # -- participants and the driver ---------------------------------------------------------

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        context = contextvars.copy_context()
        context.run(_participant.set, name)
        task = asyncio.create_task(coro, name=name, context=context)
        self.tasks[name] = task
        return task

    async def stop(self, name: str) -> None:
        task = self.tasks.pop(name)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def _blocked(self, name: str) -> bool:
        task = self.tasks[name]
        if task.done():
            return True
        on_wire = self._on_wire.get(name, set())
        held = on_wire & self._held
        return (self._waiting[name] > 0 or bool(held)) and on_wire == held

    async def settle(self) -> None:
        """Until every participant is blocked (a guard of 10 real seconds: a bug, not time)."""
        steady = spins = 0
        async with asyncio.timeout(10):
            while steady < _STEADY:
                steady = steady + 1 if all(map(self._blocked, self.tasks)) else 0
                spins += 1
                await asyncio.sleep(0 if spins % 64 else 0.001)  # let sockets be read
        for name, task in self.tasks.items():
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise AssertionError(f"{name} ended with an exception") from task.exception()

    async def run_until(self, until: float) -> None:
        """Move time timer by timer up to ``until``, each time once every participant waits."""
        while True:
            await self.settle()
            while self._timers and self._timers[0][2].done():
                heapq.heappop(self._timers)
            if not self._timers or self._timers[0][0] > until:
                self.now = max(self.now, until)
                return
            at = self._timers[0][0]
            self.now = max(self.now, at)
            while self._timers and self._timers[0][0] <= at:
                _, _, future, who = heapq.heappop(self._timers)
                if not future.done():
                    future.set_result(None)
                    self._waiting[who] -= 1

    async def run_for(self, seconds: float) -> None:
        await self.run_until(self.now + seconds)

    # -- Kubernetes requests -----------------------------------------------------------------

    def connect(self, client: ApiClient) -> None:
        """Route ``client``'s requests through ``network`` and count them on the wire."""
        rest = client.rest_client
        send = rest.request

        async def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            who = _participant.get()
            held_s = self.network(who, method, url)
            if held_s > 0:
                await self.sleep(held_s)
            number = next(self._ids)
            self._who[number] = who
            kwargs["headers"] = {**(kwargs.get("headers") or {}), REQUEST_HEADER: str(number)}
            on_wire = self._on_wire.setdefault(who, set())
            on_wire.add(number)
            try:
                return await send(method, url, *args, **kwargs)
            finally:
                on_wire.discard(number)

        rest.request = request

    def sender(self, number: int) -> str | None:
        """Who sent request ``number`` (its ``REQUEST_HEADER``)."""
        return self._who.get(number)

    def arrived(self, number: int, method: str, url: str) -> None:
        """Record a request as the server handles it."""
        self.sent.append(Sent(self.sender(number), method, url, self.now))

    async def hold(self, number: int, seconds: float) -> None:
        """The server holds request ``number`` for ``seconds`` before it handles it."""
        self._held.add(number)
        try:
            await self.sleep(seconds)
        finally:
            self._held.discard(number)
