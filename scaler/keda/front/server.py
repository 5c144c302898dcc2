"""The front process: answers KEDA from a table of verdicts that the scaling process pushes.

Why a second process: one event loop is one core. Scraping 1,000 workloads of 8 pods every
5 s takes most of it, so KEDA's calls queued behind page parsing and the collector (p99 over
a second at 2,000 calls/s). With ``server.front_process: true`` the scaling process starts
this one, which only serves gRPC, and keeps its table current:

- after every decision the scaling process pushes the new verdicts of that workload, in
  batches (``verdicts``): a call is answered from memory, never by a round trip;
- a ScaledObject the table does not know yet, or whose verdict is past its freshness, is
  asked for once (``ask``, concurrent calls share it) and the call waits for the answer, at
  most ``ASK_TIMEOUT_S`` (then UNAVAILABLE: KEDA retries and, if it lasts, applies its
  fallback). Registration, metadata errors and their messages are the scaling process's own;
- each verdict carries how long it stays true (a decision's remaining freshness, so a
  workload whose metrics go stale is UNAVAILABLE here exactly when it would be there);
- a call whose metadata is over ``tenancy.max_metadata_bytes`` (pushed by the scaling
  process: ``limits``) is refused with RESOURCE_EXHAUSTED here, before anything of it is kept;
- once a second the front reports which ScaledObjects KEDA asked about (they stay
  registered, like KEDA's calls keep them in one process) and its call counts and
  latencies (``asked``), which the scaling process exposes on its ``/metrics``.

This module imports only grpc and the servicer, so the process is small and starts fast.
Run by the scaling process as ``python -m scaler.keda.front.server FD``, never by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import logging
import signal
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc

from scaler.clock import Clock, SystemClock
from scaler.keda.front.channel import Channel, Message
from scaler.keda.proto import externalscaler_pb2 as pb
from scaler.keda.servicer import (
    EXHAUSTED,
    INVALID,
    UNAVAILABLE,
    Verdict,
    serve_keda,
    server_credentials,
    server_options,
    stop_keda,
)

log = logging.getLogger("scaler.front")

ASK_TIMEOUT_S = 2.0  # a call waits this long for the scaling process to answer an ask
REPORT_EVERY_S = 1.0  # asked ScaledObjects and call statistics, to the scaling process
STREAM_RECHECK_S = 1.0  # a stream with no verdict to wait for looks again after this

RefKey = tuple[str, str, frozenset[tuple[str, str]]]


@dataclass
class _Entry:
    verdict: Verdict
    expires_s: float


class DecisionTable:
    """The ``Decisions`` source of the front: pushed verdicts, asked for when missing."""

    def __init__(self, channel: Channel, *, idle_s: float,
                 clock: Clock | None = None,
                 ask_timeout_s: float = ASK_TIMEOUT_S, max_metadata_bytes: int = 16384) -> None:
        self.channel = channel
        self.idle_s = idle_s
        self.max_metadata_bytes = max_metadata_bytes
        self.clock = clock or SystemClock()
        self.ask_timeout_s = ask_timeout_s
        self._ids: dict[RefKey, int] = {}
        self._keys: dict[int, RefKey] = {}
        self._entries: dict[int, _Entry] = {}
        self._pending: dict[int, asyncio.Future[Verdict]] = {}
        self._changed: dict[int, asyncio.Event] = {}
        self._asked: set[int] = set()  # by calls: they register and update metadata
        self._held: set[int] = set()  # by open streams: they only keep alive
        self._last_asked: dict[int, float] = {}
        self._calls: dict[tuple[str, str], list[float | None]] = {}
        self._next_id = itertools.count(1)

    def __len__(self) -> int:
        return len(self._entries)

    # -- the Decisions protocol ----------------------------------------------------------------

    async def verdict(self, ref: pb.ScaledObjectRef) -> Verdict:
        return await self._verdict(ref, held=False)

    async def _verdict(self, ref: pb.ScaledObjectRef, *, held: bool) -> Verdict:
        """``held``: asked by an open stream after its first message, which only keeps its
        workload alive; a call (or a stream's first message) registers and updates it."""
        too_large = self._too_large(ref)
        if too_large is not None:
            return too_large
        ref_id = self._id(ref)
        (self._held if held else self._asked).add(ref_id)
        entry = self._entries.get(ref_id)
        if entry is not None and entry.expires_s > self.clock.monotonic():
            return entry.verdict
        return await self._ask(ref_id, ref, held=held)

    async def verdicts(self, ref: pb.ScaledObjectRef) -> AsyncIterator[Verdict]:
        too_large = self._too_large(ref)
        if too_large is not None:
            yield too_large
            return
        ref_id = self._id(ref)
        held = False
        while True:
            changed = self._changed.setdefault(ref_id, asyncio.Event())
            yield await self._verdict(ref, held=held)
            held = True
            entry = self._entries.get(ref_id)
            wait_s = (entry.expires_s - self.clock.monotonic() if entry is not None
                      else STREAM_RECHECK_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), max(wait_s, 0.0))

    def record(self, method: str, code: grpc.StatusCode, seconds: float | None) -> None:
        self._calls.setdefault((method, code.name), []).append(seconds)

    # -- from and to the scaling process ---------------------------------------------------

    def apply(self, message: Message) -> None:
        """Pushed verdicts (``{"t": "verdicts", "items": [[id, verdict, valid_for_s]]}``),
        or a ``sync``: answered with a report and ``synced``, after all that came before."""
        if message["t"] == "sync":
            self.channel.send(self.report())
            self.channel.send({"t": "synced", "n": message["n"]})
            return
        if message["t"] == "limits":
            self.max_metadata_bytes = int(message["max_metadata_bytes"])
            return
        if message["t"] != "verdicts":
            log.warning("unknown message %r from the scaling process: ignored", message["t"])
            return
        now = self.clock.monotonic()
        for ref_id, verdict_json, valid_for_s in message["items"]:
            if ref_id not in self._keys:
                continue  # forgotten here meanwhile: asked for again at its next call
            verdict = Verdict.from_json(verdict_json)
            self._entries[ref_id] = _Entry(verdict, now + float(valid_for_s))
            pending = self._pending.pop(ref_id, None)
            if pending is not None and not pending.done():
                pending.set_result(verdict)
            event = self._changed.pop(ref_id, None)
            if event is not None:
                event.set()

    def report(self) -> Message:
        """What KEDA asked about and the call statistics since the last report (and, as
        the once-a-second chore it is, forget what KEDA stopped asking about)."""
        now = self.clock.monotonic()
        for ref_id in self._asked | self._held:
            self._last_asked[ref_id] = now
        message = {"t": "asked", "ids": sorted(self._asked), "held": sorted(self._held),
                   "calls": [[method, code, seconds]
                             for (method, code), seconds in self._calls.items()]}
        self._asked, self._held = set(), set()
        self._calls = {}
        self._forget_idle(now)
        return message

    async def report_every(self, every_s: float = REPORT_EVERY_S) -> None:
        while True:
            await asyncio.sleep(every_s)
            self.channel.send(self.report())
            await self.channel.drain()

    # -- internals -----------------------------------------------------------------------------

    def _too_large(self, ref: pb.ScaledObjectRef) -> Verdict | None:
        """RESOURCE_EXHAUSTED for metadata the scaling process would refuse as too large
        (its check adds tuning's keys: a trigger over the limit alone is over it there too)."""
        metadata = ref.scalerMetadata
        if sum(len(k) + len(v) for k, v in metadata.items()) * 4 <= self.max_metadata_bytes:
            return None  # the common case, without encoding (UTF-8: 4 bytes a character at most)
        size = sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())
        if size <= self.max_metadata_bytes:
            return None
        return Verdict("", EXHAUSTED, (
            f"the trigger metadata holds {size} bytes, more than tenancy.max_metadata_bytes="
            f"{self.max_metadata_bytes}: nothing is registered; shorten it, or ask the "
            "operator to raise the limit"))

    def _id(self, ref: pb.ScaledObjectRef) -> int:
        key = (ref.namespace, ref.name, frozenset(ref.scalerMetadata.items()))
        ref_id = self._ids.get(key)
        if ref_id is None:
            ref_id = self._ids[key] = next(self._next_id)
            self._keys[ref_id] = key
        return ref_id

    async def _ask(self, ref_id: int, ref: pb.ScaledObjectRef, *, held: bool) -> Verdict:
        pending = self._pending.get(ref_id)
        if pending is None:
            pending = self._pending[ref_id] = asyncio.get_running_loop().create_future()
            self.channel.send({"t": "ask", "id": ref_id, "namespace": ref.namespace,
                               "name": ref.name, "metadata": dict(ref.scalerMetadata),
                               "held": held})
        try:
            return await asyncio.wait_for(asyncio.shield(pending), self.ask_timeout_s)
        except TimeoutError:
            if self._pending.get(ref_id) is pending:
                del self._pending[ref_id]  # the next call asks again
            return self._unanswered(ref_id, ref)

    def _unanswered(self, ref_id: int, ref: pb.ScaledObjectRef) -> Verdict:
        """Bad metadata stays bad; anything else is UNAVAILABLE for now."""
        known = self._entries.get(ref_id)
        if known is not None and known.verdict.code == INVALID:
            return known.verdict
        return Verdict(known.verdict.metric_name if known else "", UNAVAILABLE, (
            f"{ref.namespace}/{ref.name}: the scaling process did not answer within "
            f"{self.ask_timeout_s:g} s (overloaded or restarting? see its log); KEDA retries"))

    def _forget_idle(self, now: float) -> None:
        """Drop what KEDA has not asked about for ``idle_s`` (old metadata, deleted objects)."""
        for ref_id, asked_s in list(self._last_asked.items()):
            if now - asked_s > self.idle_s:
                del self._last_asked[ref_id]
                self._ids.pop(self._keys.pop(ref_id), None)
                self._entries.pop(ref_id, None)
                self._changed.pop(ref_id, None)
                pending = self._pending.pop(ref_id, None)
                if pending is not None:  # its callers gave up long ago
                    pending.cancel()


async def run_front(sock: socket.socket) -> int:
    """Serve until the scaling process closes the line (or SIGTERM); the exit status."""
    channel = await Channel.over(sock)
    hello = await channel.receive()
    if hello is None or hello["t"] != "hello":
        log.error("expected a hello from the scaling process, got %r", hello)
        return 2
    table = DecisionTable(channel, idle_s=float(hello["idle_s"]),
                          max_metadata_bytes=int(hello["max_metadata_bytes"]),
                          ask_timeout_s=float(hello.get("ask_timeout_s", ASK_TIMEOUT_S)))
    closing = asyncio.Event()
    try:
        server, port = await serve_keda(
            table, host=hello["host"], port=int(hello["port"]),
            credentials=_credentials(hello.get("tls")),
            options=server_options(max_message_bytes=int(hello["max_message_bytes"]),
                                   max_concurrent_streams=int(hello["max_concurrent_streams"]),
                                   keepalive_s=float(hello["keepalive_s"]),
                                   keepalive_timeout_s=float(hello["keepalive_timeout_s"])),
            closing=closing)
    except (OSError, RuntimeError, ValueError) as exc:
        channel.send({"t": "failed", "error": str(exc)})
        await channel.drain()
        return 1
    keep_start_up_objects_out_of_gc()
    channel.send({"t": "ready", "port": port})
    reports = asyncio.create_task(table.report_every(), name="front reports")
    receiving = asyncio.create_task(_receive(channel, table), name="front receive")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([receiving, stopped], return_when=asyncio.FIRST_COMPLETED)
    reports.cancel()
    await stop_keda(server, closing, float(hello["grace_s"]))  # open streams end with OK
    await channel.close()
    if receiving.done() and receiving.exception() is not None:
        log.error("the line to the scaling process broke", exc_info=receiving.exception())
        return 1
    return 0


def keep_start_up_objects_out_of_gc() -> None:
    """Freeze what the start loaded (grpc, protobuf, this package: about 25,000 objects).

    They live as long as the process, yet every full collection walked them: an 8 ms pause
    in the middle of calls, now and then. Frozen, a full collection walks only what calls
    left (under 1 ms). The scaling process does the same every 30 s for its own state.
    """
    gc.collect()
    gc.freeze()


async def _receive(channel: Channel, table: DecisionTable) -> None:
    while (message := await channel.receive()) is not None:
        try:
            table.apply(message)
        except Exception:  # a bug must not stop this process's updates for good
            log.exception("message %.200r from the scaling process failed", message)


def _credentials(tls: dict[str, Any] | None) -> grpc.ServerCredentials | None:
    if not tls:
        return None
    ca = tls.get("client_ca")
    return server_credentials(cert_chain=tls["cert_chain"].encode(),
                              private_key=tls["private_key"].encode(),
                              client_ca=ca.encode() if ca else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scaler.keda.front.server", description=__doc__)
    parser.add_argument("fd", type=int, help="the socket the scaling process passed")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the scaling process stops us
    return asyncio.run(run_front(socket.socket(fileno=args.fd)))


if __name__ == "__main__":
    raise SystemExit(main())
