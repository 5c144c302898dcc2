"""One actor for node changes: leader election on a ``coordination.k8s.io/v1`` Lease.

Several scaler replicas may run for availability, but only one may order nodes. Each replica
runs a ``LeaderElector``; the one holding the Lease is the leader (``is_leader``).

Why not ``kubernetes_asyncio.leaderelection``: it reads ``time.time()`` and sleeps with
``asyncio.sleep`` directly (no injectable clock, so its timing cannot be tested in zero time),
it keeps believing it leads while it retries a failed renew until the renew deadline, it has no
release on shutdown, and it writes naive local-time timestamps. The protocol is small, so it is
written here in client-go's shape:

- Every ``retry_period_s`` one round: read the Lease. Absent: create it holding it. Held by us:
  renew (``renewTime`` = now). Held by another: take it over only once the record has not
  changed for the Lease's ``leaseDurationSeconds`` *as observed by our own clock* (client-go's
  rule: no trust in the other replica's clock). Released (empty holder): take it at once.
- Every write is a replace carrying the ``resourceVersion`` that was read, so two candidates
  racing for an expired Lease cannot both win: the API server answers the loser 409.
- ``is_leader`` turns False at once when a renew fails in any way (error, timeout after
  ``renew_deadline_s``, conflict) or the Lease names another holder: a leader that cannot prove
  its lease must stop acting before another one may start (the lease duration is longer than
  the renew deadline, which is what makes the hand-over safe).
- ``stop()`` ends ``run()`` and releases a held Lease (empty holder, 1 s duration) so the next
  leader need not wait a full lease duration.

What the leader must hand on to the next one lives in the Lease's annotations: every write
(renew, takeover, release) carries the annotations it read, with this replica's own
(``annotate``) over them, so nothing written by one holder is lost by the next. Each
acquisition by this process starts a new ``term``; ``term_annotations`` are the annotations the
Lease had then (what the previous holder, or this replica before a restart, left).
``time_left_s`` is how long the leadership proven so far lasts: a caller acting as leader
bounds each of its calls by it, so nothing it does outlives its leadership.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping

import aiohttp
from kubernetes_asyncio.client import CoordinationV1Api, V1Lease, V1LeaseSpec, V1ObjectMeta
from kubernetes_asyncio.client.exceptions import ApiException

from adapters.kubernetes.deadline import within

__all__ = ["LeaderElector", "LeaseRecord"]

log = logging.getLogger(__name__)

_FAILURES = (ApiException, aiohttp.ClientError, OSError, TimeoutError)


@dataclasses.dataclass(frozen=True)
class LeaseRecord:
    """What a Lease says, as far as the election is concerned."""

    holder: str
    renew_time: datetime.datetime | None
    duration_s: int | None
    transitions: int
    resource_version: str | None


def _record(lease: V1Lease) -> LeaseRecord:
    spec = lease.spec or V1LeaseSpec()
    return LeaseRecord(holder=spec.holder_identity or "", renew_time=spec.renew_time,
                       duration_s=spec.lease_duration_seconds,
                       transitions=spec.lease_transitions or 0,
                       resource_version=lease.metadata.resource_version)


class LeaderElector:
    """Hold ``namespace/lease_name`` as ``identity`` while ``run()`` runs; see the module doc.

    ``clock`` (seconds since the epoch) stamps the Lease and times the other holder's expiry;
    ``sleep`` waits between rounds. Both are injectable so tests take no real time.
    """

    def __init__(self, api: CoordinationV1Api, namespace: str, lease_name: str, identity: str,
                 *, lease_duration_s: float = 15, renew_deadline_s: float = 10,
                 retry_period_s: float = 2, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if not lease_duration_s > renew_deadline_s > retry_period_s > 0:
            raise ValueError(
                "leader election needs lease_duration_s > renew_deadline_s > retry_period_s > 0,"
                f" got {lease_duration_s} > {renew_deadline_s} > {retry_period_s}")
        self._api = api
        self._namespace = namespace
        self._name = lease_name
        self.identity = identity
        self._duration = lease_duration_s
        self._deadline = renew_deadline_s
        self._period = retry_period_s
        self._clock = clock
        self._sleep = sleep
        self._leader = False
        self._stopped = False
        self._lock = asyncio.Lock()
        self._seen: tuple[LeaseRecord, float] | None = None  # another's record, when it changed
        self._acquired_at: datetime.datetime | None = None
        self._renewed_s: float | None = None  # clock time of the last successful acquire/renew
        self._read_annotations: dict[str, str] = {}  # the Lease's, as last read
        self._own: dict[str, str] = {}  # set by ``annotate`` this term, carried on every write
        self.term = 0  # acquisitions by this process so far (0: never led)
        self.term_annotations: Mapping[str, str] = {}  # the Lease's when this term began
        self._term_started_s: float | None = None  # clock time this term's Lease was taken

    @property
    def is_leader(self) -> bool:
        """True while the last successful renew is younger than ``renew_deadline_s``.

        Time-bound, as client-go's: if the election loop dies (a cancelled task, a bug), the
        leadership it proved runs out by itself before another instance may take over.
        """
        renewed = self._renewed_s
        return (self._leader and renewed is not None
                and self._clock() - renewed < self._deadline)

    def time_left_s(self) -> float:
        """Seconds the leadership proven so far lasts (``is_leader`` turns False then); 0 when
        not leading."""
        renewed = self._renewed_s
        if not self._leader or renewed is None:
            return 0.0
        return max(0.0, renewed + self._deadline - self._clock())

    def term_age_s(self) -> float:
        """Seconds since this term began (the Lease was taken); 0 before the first."""
        started = self._term_started_s
        return 0.0 if started is None else max(0.0, self._clock() - started)

    async def annotate(self, values: Mapping[str, str]) -> bool:
        """Write ``values`` into the Lease's annotations now, and keep them on every later
        write of this term; only while leading (a renew that carries them). True if written."""
        async with self._lock:
            if self._stopped or not self.is_leader:
                return False
            self._own.update(values)
            return await self._round()

    @property
    def where(self) -> str:
        return f"lease {self._namespace}/{self._name}"

    async def run(self) -> None:
        """Try to acquire, then renew, every ``retry_period_s`` until ``stop()``."""
        while not self._stopped:
            await self.round()
            await self._sleep(self._period)

    async def stop(self) -> None:
        """End ``run()`` after its current round and release the Lease if held."""
        async with self._lock:
            self._stopped = True
            if self._leader:
                self._leader = False
                try:  # a hung API server must not hold the shutdown
                    await within(self._release(), self._deadline, self._sleep)
                except TimeoutError as exc:
                    log.warning("%s: release failed: %s", self.where, exc)

    async def round(self) -> bool:
        """One acquire-or-renew attempt; sets and returns ``is_leader``."""
        async with self._lock:
            if self._stopped:
                return False
            return await self._round()

    async def _round(self) -> bool:
        was = self._leader
        try:
            started = self._clock()
            self._leader = await within(self._acquire_or_renew(), self._deadline, self._sleep)
            if self._leader:
                self._renewed_s = started
        except _FAILURES as exc:
            self._leader = False
            log.warning("%s: %s failed: %s", self.where, "renew" if was else "acquire",
                        _short(exc))
        if was != self._leader:
            log.info("%s: %s %s leadership", self.where, self.identity,
                     "acquired" if self._leader else "lost")
        return self._leader

    async def _acquire_or_renew(self) -> bool:
        lease = await self._read()
        now = self._clock()
        self._read_annotations = {} if lease is None else dict(
            (lease.metadata.annotations if lease.metadata else None) or {})
        if lease is None:
            return await self._create(now)
        record = _record(lease)
        if record.holder == self.identity:
            return await self._replace(record, now, takeover=False)
        if record.holder and not self._expired(record, now):
            return False
        return await self._replace(record, now, takeover=True)

    def _annotations(self, *, new_term: bool) -> dict[str, str]:
        """What a write carries: the Lease's annotations, this term's own over them."""
        return {**self._read_annotations, **({} if new_term else self._own)}

    def _expired(self, record: LeaseRecord, now: float) -> bool:
        """True once ``record`` has stayed the same for its lease duration on our clock."""
        if self._seen is None or self._seen[0] != record:
            self._seen = (record, now)
        duration = self._duration if record.duration_s is None else record.duration_s
        return now - self._seen[1] >= duration

    async def _read(self) -> V1Lease | None:
        try:
            return await self._api.read_namespaced_lease(self._name, self._namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _lease(self, spec: V1LeaseSpec, resource_version: str | None,
               annotations: dict[str, str]) -> V1Lease:
        meta = V1ObjectMeta(name=self._name, namespace=self._namespace,
                            resource_version=resource_version, annotations=annotations or None)
        return V1Lease(api_version="coordination.k8s.io/v1", kind="Lease", metadata=meta,
                       spec=spec)

    def _spec(self, now: datetime.datetime, acquired: datetime.datetime,
              transitions: int) -> V1LeaseSpec:
        return V1LeaseSpec(holder_identity=self.identity,
                           lease_duration_seconds=math.ceil(self._duration),
                           acquire_time=acquired, renew_time=now, lease_transitions=transitions)

    async def _create(self, now_s: float) -> bool:
        now = _utc(now_s)
        annotations = self._annotations(new_term=True)
        lease = self._lease(self._spec(now, now, 0), None, annotations)
        return await self._write(self._api.create_namespaced_lease(self._namespace, lease), now,
                                 annotations=annotations, new_term=True)

    async def _replace(self, record: LeaseRecord, now_s: float, *, takeover: bool) -> bool:
        """Renew our Lease (keeping its acquire time) or take over a released or expired one.

        The first write of this process is an acquisition even if the Lease names us (a
        restarted container keeps its pod's name): this process has not led before."""
        now = _utc(now_s)
        new_term = takeover or self._acquired_at is None
        acquired = now if new_term or self._acquired_at is None else self._acquired_at
        transitions = record.transitions + (1 if takeover else 0)
        annotations = self._annotations(new_term=new_term)
        lease = self._lease(self._spec(now, acquired, transitions), record.resource_version,
                            annotations)
        return await self._write(
            self._api.replace_namespaced_lease(self._name, self._namespace, lease), acquired,
            annotations=annotations, new_term=new_term)

    async def _write(self, call: Awaitable[V1Lease], acquired: datetime.datetime, *,
                     annotations: dict[str, str], new_term: bool) -> bool:
        """A create or replace; 409 (someone else wrote first) means we do not hold the Lease."""
        try:
            await call
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        self._acquired_at = acquired
        if new_term:
            self.term += 1
            self.term_annotations = dict(self._read_annotations)
            self._term_started_s = acquired.timestamp()
            self._own = {}
        self._read_annotations = annotations
        return True

    async def _release(self) -> None:
        """Best effort: hand the Lease back; a failure only makes the next leader wait."""
        try:
            lease = await self._read()
            if lease is None or _record(lease).holder != self.identity:
                return
            record = _record(lease)
            spec = V1LeaseSpec(holder_identity="", lease_duration_seconds=1,
                               renew_time=_utc(self._clock()),
                               lease_transitions=record.transitions)
            read = (lease.metadata.annotations if lease.metadata else None) or {}
            await self._api.replace_namespaced_lease(  # the next holder reads what we knew
                self._name, self._namespace,
                self._lease(spec, record.resource_version, {**read, **self._own}))
        except _FAILURES as exc:
            log.warning("%s: release failed: %s", self.where, _short(exc))


def _utc(now_s: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(now_s, tz=datetime.UTC)


def _short(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}"
    return f"{type(exc).__name__}: {exc}"
