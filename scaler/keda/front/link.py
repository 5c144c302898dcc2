"""The scaling process's side of the front process: start it, keep its table current.

``FrontProcess`` starts ``python -m scaler.keda.front.server`` with one end of a socket pair,
hands it the gRPC settings (and the TLS material, read here once), and starts a new one if it
ever dies (KEDA's calls fail for about a second; nothing learnt is lost, it lives here).
``FrontLink`` serves one such connection: it answers the front's asks by resolving the
ScaledObject exactly as an RPC in this process would, pushes every workload's verdict after each
decision (batched), and takes the front's reports of what KEDA asked about. See
``scaler.keda.front.server`` for why the split exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

from scaler.config.tls import TlsMaterial
from scaler.keda.front.channel import Channel, Message
from scaler.keda.front.child import FrontChild, yield_cpu_to_the_front
from scaler.keda.front.hello import hello
from scaler.keda.servicer import OK, UNAVAILABLE, Verdict
from scaler.keda.verdict import REFUSALS, refused, verdict_of
from scaler.service.errors import NamesPending, Unavailable
from scaler.service.first_scrape import first_round, first_round_running
from scaler.service.service import ScalerService
from scaler.service.workloads import Workload, WorkloadKey

log = logging.getLogger("scaler.front_link")

PUBLISH_BATCH_S = 0.05  # decisions made within this share one message
REPUBLISH_EVERY_S = 15.0  # every verdict again (a ConfigMap reload may change any of them)
RECHECK_UNAVAILABLE_S = 5.0  # the front asks again for an UNAVAILABLE verdict after this
RECHECK_INVALID_S = 5.0  # and for bad metadata (the ConfigMap may have made it good)
START_TIMEOUT_S = 30.0
RESTART_DELAY_S = 1.0
FORGET_EVERY_S = 60.0


@dataclass
class _Ref:
    """One ScaledObject identity as the front sees it (name and exact metadata)."""

    namespace: str
    name: str
    metadata: dict[str, str]
    last_asked_s: float
    key: WorkloadKey | None = field(default=None)


class FrontLink:
    def __init__(self, service: ScalerService, channel: Channel) -> None:
        self.service = service
        self.channel = channel
        self._refs: dict[int, _Ref] = {}
        self._ids_of: dict[WorkloadKey, set[int]] = {}
        self._dirty: set[int] = set()
        self._wake = asyncio.Event()
        self._forgot_s = self._now()
        self._syncs: dict[int, asyncio.Future[None]] = {}
        self._sync_numbers = itertools.count(1)

    async def run(self) -> None:
        """Until the front closes the line (or it breaks: then this raises)."""
        publishing = asyncio.create_task(self._publish(), name="front publish")
        try:
            while (message := await self.channel.receive()) is not None:
                try:
                    self.handle(message)
                except Exception:  # a bug must not stop the front's updates for good
                    log.exception("message %.200r from the front process failed", message)
        finally:
            publishing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publishing
            for future in self._syncs.values():  # nobody waits for a line that is gone
                if not future.done():
                    future.set_exception(ConnectionError("the front process is gone"))

    def on_decision(self, workload: Workload) -> None:
        ids = self._ids_of.get(workload.key)
        if ids:
            self._dirty |= ids
            self._wake.set()

    def handle(self, message: Message) -> None:
        if message["t"] == "ask":
            self._answer_ask(message)
        elif message["t"] == "synced":
            future = self._syncs.pop(int(message["n"]), None)
            if future is not None and not future.done():
                future.set_result(None)
        elif message["t"] == "asked":
            for ref_id in message["ids"]:
                self._touch(ref_id)
            for ref_id in message["held"]:
                self._keep(ref_id)
            self._count_calls(message["calls"])
            self._forget_idle()
        else:
            log.warning("unknown message %r from the front process: ignored", message["t"])

    def _answer_ask(self, message: Message) -> None:
        """Resolve the ScaledObject as a call here would (a held stream's ask: as the
        stream would, never rolling newer metadata back), then send its verdict (once the
        host names it names are resolved and checked, the first time)."""
        ref_id = int(message["id"])
        if ref_id not in self._refs:
            self._refs[ref_id] = _Ref(str(message["namespace"]), str(message["name"]),
                                      dict(message["metadata"]), self._now())
        pending = self._keep(ref_id) if message.get("held") else self._touch(ref_id)
        if pending is not None or first_round_running(self.service, self._refs[ref_id].key):
            self.service.spawn(self._answer_later(ref_id, pending), f"ask {ref_id}")
            return
        self._answer(ref_id)

    async def _answer_later(self, ref_id: int, pending: NamesPending | None) -> None:
        """Once its names are resolved, and its first scrape round is over (bounded)."""
        if pending is not None:
            await pending.wait()
            if ref_id not in self._refs or self._touch(ref_id) is not None:
                return
        await first_round(self.service, self._refs[ref_id].key)
        if ref_id in self._refs:
            self._answer(ref_id)

    def _answer(self, ref_id: int) -> None:
        """Send a ref's verdict; forget a ref that registered nothing (refused: the front
        asks again when its verdict expires), so refused calls are not kept here."""
        self.channel.send({"t": "verdicts", "items": [self._item(ref_id)]})
        if self._refs[ref_id].key is None:
            del self._refs[ref_id]

    async def settle(self) -> None:
        """Return once the front holds every decision made so far, and this process has
        its call statistics (for tests and benchmarks: answers lag decisions by a batch)."""
        self._send_dirty()
        number = next(self._sync_numbers)
        future = self._syncs[number] = asyncio.get_running_loop().create_future()
        self.channel.send({"t": "sync", "n": number})
        await self.channel.drain()
        await future

    def _touch(self, ref_id: int) -> NamesPending | None:
        """KEDA asked: register (again) or keep the workload, as an RPC here would; what to
        wait for first when it names hosts not resolved yet."""
        ref = self._refs.get(ref_id)
        if ref is None:
            return None
        ref.last_asked_s = self._now()
        try:
            workload = self.service.resolve(ref.namespace, ref.name, ref.metadata)
        except NamesPending as pending:
            return pending
        except REFUSALS:  # the verdict carries the error
            return None
        self._map(ref_id, ref, workload.key)
        return None

    def _keep(self, ref_id: int) -> NamesPending | None:
        """A held stream: keeps its workload alive but never rolls its spec back (see
        ``ScalerService.keep_alive``); registers it again only if it was dropped."""
        ref = self._refs.get(ref_id)
        workload = self.service.registry.get(ref.key) if ref and ref.key else None
        if ref is None or workload is None:
            return self._touch(ref_id)
        ref.last_asked_s = self._now()
        self.service.keep_alive(workload, ref.metadata)
        return None

    def _item(self, ref_id: int) -> list[Any]:
        ref = self._refs[ref_id]
        try:
            workload = self.service.lookup(ref.namespace, ref.name, ref.metadata)
        except REFUSALS as exc:
            again = RECHECK_UNAVAILABLE_S if isinstance(exc, Unavailable) else RECHECK_INVALID_S
            return [ref_id, refused(exc).to_json(), again]
        if workload is None:  # dropped as idle: the front asks (and so registers) at once
            message = (f"workload {ref.namespace}/{ref.name} is not registered (no call for "
                       f"workloads.idle_timeout_s); it is registered again at the next call")
            return [ref_id, Verdict("", UNAVAILABLE, message).to_json(), 0.0]
        self._map(ref_id, ref, workload.key)
        verdict, fresh_s = verdict_of(self.service, workload)
        return [ref_id, verdict.to_json(), fresh_s if verdict.code == OK
                else RECHECK_UNAVAILABLE_S]

    def _map(self, ref_id: int, ref: _Ref, key: WorkloadKey) -> None:
        if ref.key != key:
            self._unmap(ref_id, ref)
            ref.key = key
            self._ids_of.setdefault(key, set()).add(ref_id)

    def _unmap(self, ref_id: int, ref: _Ref) -> None:
        if ref.key is not None and (ids := self._ids_of.get(ref.key)) is not None:
            ids.discard(ref_id)
            if not ids:
                del self._ids_of[ref.key]

    async def _publish(self) -> None:
        """Changed verdicts in batches; all of them every ``REPUBLISH_EVERY_S``."""
        last_full = time.monotonic()  # the event loop's own time: these waits are real
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), REPUBLISH_EVERY_S)
            await asyncio.sleep(PUBLISH_BATCH_S)
            if time.monotonic() - last_full >= REPUBLISH_EVERY_S:
                self._dirty, last_full = set(self._refs), time.monotonic()
                self.channel.send({"t": "limits", "max_metadata_bytes":  # a reload may change it
                                   self.service.config.tenancy.max_metadata_bytes})
            self._send_dirty()
            await self.channel.drain()

    def _send_dirty(self) -> None:
        self._wake.clear()
        ids, self._dirty = self._dirty, set()
        items = [self._item(ref_id) for ref_id in ids if ref_id in self._refs]
        if items:
            self.channel.send({"t": "verdicts", "items": items})

    def _count_calls(self, calls: list[list[Any]]) -> None:
        telemetry = self.service.telemetry
        for method, code, durations in calls:
            telemetry.rpc_requests.labels(method, code).inc(len(durations))
            histogram = telemetry.rpc_duration.labels(method)
            for seconds in durations:
                if seconds is not None:
                    histogram.observe(seconds)

    def _forget_idle(self) -> None:
        """ScaledObjects KEDA stopped asking about (twice the idle timeout: the front's first)."""
        now = self._now()
        if now - self._forgot_s < FORGET_EVERY_S:
            return
        self._forgot_s = now
        limit = 2 * self.service.config.workloads.idle_timeout_s
        for ref_id, ref in list(self._refs.items()):
            if now - ref.last_asked_s > limit:
                del self._refs[ref_id]
                self._unmap(ref_id, ref)

    def _now(self) -> float:
        return self.service.clock.monotonic()


class FrontProcess:
    """The front process, started, supervised and stopped by the scaling process."""

    def __init__(self, service: ScalerService, *, tls: TlsMaterial | None, security: str,
                 log_level: str = "INFO") -> None:
        """``security`` describes the gRPC security for the log (never key material)."""
        self.service = service
        self.tls = tls
        self.security = security
        self.log_level = log_level
        self.port: int | None = None
        self.process: FrontChild | None = None
        self._link: FrontLink | None = None
        self._link_task: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        service.readiness_checks.append(self._not_ready_because)
        self.restarts = Counter("scaler_front_restarts_total",
                                "Front processes started again after one exited unasked.",
                                registry=service.telemetry.registry)

    async def start(self) -> int:
        """Start the front; its bound gRPC port (the configured one, or a free one for 0).

        Then this process lowers its own CPU priority by ``SCALING_NICE`` (once per process;
        no privilege needed): when both are ready to run, an answer to KEDA goes before page
        parsing (a scrape round may start milliseconds late; a call should not wait).
        """
        self.port = await self._spawn(self.service.config.server.grpc_port)
        yield_cpu_to_the_front()
        self._supervisor = asyncio.create_task(self._supervise(), name="front supervisor")
        return self.port

    async def stop(self) -> None:
        """Close the line (the front drains in-flight calls for ``server.grace_s``), wait."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
        if self._link is not None:
            await self._link.channel.close()
        if self.process is not None and self.process.returncode is None:
            try:
                await asyncio.wait_for(self.process.wait(),
                                       self.service.config.server.grace_s + 5.0)
            except TimeoutError:
                log.warning("front process %d did not stop in time: killed", self.process.pid)
                self.process.kill()
                await self.process.wait()
        self._unlink()

    async def settle(self) -> None:
        """See ``FrontLink.settle``; returns at once while no front is connected."""
        if self._link is not None:
            await self._link.settle()

    def _not_ready_because(self) -> str | None:
        if self._link is None and not self._stopping:
            return "the front process answering KEDA is not running (it is being started)"
        return None

    async def _spawn(self, port: int) -> int:
        """Start a front and link it; on any failure (or cancellation) none is left running."""
        parent, child = socket.socketpair()
        try:
            process = await FrontChild.spawn(
                [sys.executable, "-m", "scaler.keda.front.server", str(child.fileno()),
                 "--log-level", self.log_level], pass_fds=(child.fileno(),))
        finally:
            child.close()
        self.process = process  # from now on, stop() sees it whatever happens here
        try:
            channel = await Channel.over(parent)
            bound = await self._handshake(channel, port)
        except BaseException:
            process.kill_and_reap()
            parent.close()
            raise
        self._link = FrontLink(self.service, channel)
        self.service.decision_listeners.append(self._link.on_decision)
        self._link_task = asyncio.create_task(self._link.run(), name="front link")
        self._link_task.add_done_callback(self._line_ended)
        log.info("gRPC ExternalScaler listening on %s:%d in front process %d (%s)",
                 self.service.config.server.host, bound, process.pid, self.security)
        return bound

    async def _handshake(self, channel: Channel, port: int) -> int:
        """Send the hello; the port the front bound, or OSError saying why it could not."""
        channel.send(hello(self.service.config, port, self.tls))
        await channel.drain()
        try:
            reply = await asyncio.wait_for(channel.receive(), START_TIMEOUT_S)
        except TimeoutError:
            reply = {"t": "failed", "error": f"no answer within {START_TIMEOUT_S:g} s"}
        except ValueError as exc:
            reply = {"t": "failed", "error": f"unreadable answer: {exc}"}
        if reply is None or reply["t"] != "ready":
            await channel.close()
            why = reply["error"] if reply else "it exited (see its log above)"
            raise OSError(f"the front process did not start: {why}")
        return int(reply["port"])

    def _line_ended(self, task: asyncio.Task[None]) -> None:
        """The line to a running front ended: unless stopping, end that front too (the
        supervisor starts a new one) rather than leave it answering from a table that no
        longer changes."""
        if self._stopping or task.cancelled() or self.process is None:
            return
        log.error("the line to front process %d ended (%s): ending the process, so that a "
                  "new one starts", self.process.pid, task.exception() or "closed")
        self.process.kill()

    async def _supervise(self) -> None:
        while not self._stopping:
            assert self.process is not None
            status = await self.process.wait()
            self._unlink()
            if self._stopping:
                return
            log.error("the front process exited (status %s): starting a new one; KEDA's "
                      "calls fail until it listens", status)
            self.restarts.inc()
            await self._respawn()

    async def _respawn(self) -> None:
        while not self._stopping:
            await asyncio.sleep(RESTART_DELAY_S)
            try:
                await self._spawn(self.port or self.service.config.server.grpc_port)
                return
            except Exception as exc:  # whatever went wrong, keep trying: KEDA needs a front
                log.error("%s; trying again in %g s", exc, RESTART_DELAY_S)

    def _unlink(self) -> None:
        if self._link is not None:
            with contextlib.suppress(ValueError):
                self.service.decision_listeners.remove(self._link.on_decision)
        if self._link_task is not None:
            self._link_task.cancel()
        self._link, self._link_task = None, None
