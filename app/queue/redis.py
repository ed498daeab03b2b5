"""The shared execution queue: a Redis stream read by a consumer group (n8n's queue mode).

Each queued run is one stream entry carrying the stored record. Worker processes read with
``XREADGROUP`` (one entry per idle worker, so runs spread over processes), and a run is
held by this process from ``get`` until ``done`` (``XACK`` + ``XDEL``), after its final or
waiting state is durable: the hand-off is at least once.

Exactly one process runs a run: ``get`` first claims it in the shared store (``new`` →
``running``, a compare-and-set); an entry whose run is no longer ``new`` (canceled while
queued, a duplicate) is acknowledged and skipped.

A process that dies leaves its entries pending. Every holder refreshes the idle time of
its entries (``XCLAIM ... JUSTID``) several times per ``claim_idle_s``, so an entry idle
for longer belongs to a dead process, and a worker takes it over (``XAUTOCLAIM``): a run
that never started runs here; one that was ``running`` is handed out as it is stored, and
the worker ends it ``crashed`` (``executionFinished{crashed}`` logged and published, then
``done`` acknowledges it); one already ended is just acknowledged.

What Redis loses (a restart without persistence, a run stored while Redis was away) is
queued again from the store, the source of truth (:mod:`app.queue.restore`).

The stream itself, as this process's consumer reads it, is :mod:`app.queue.stream`.

Cancel reaches the holder through the Redis channel :attr:`RedisQueue.control`: every
consuming process subscribes its workers' ``cancel`` to it (``app/backends.py``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from types import TracebackType
from typing import Protocol, Self

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.background import CANCEL_WAIT_S, Background
from app.errors import BackendUnavailable
from app.model.limits import Claim
from app.model.records import ExecutionRecord
from app.model.status import ExecutionStatus, check_transition
from app.queue.base import Admits, admit_all
from app.queue.held_back import RECHECK_S, HeldBack
from app.queue.restore import QueuedRuns, Restorer
from app.queue.stream import RunStream

log = logging.getLogger(__name__)
S = ExecutionStatus
#: Longest pause before a worker tries to take a run again after a failure.
RETRY_S = 0.25


class Claims(QueuedRuns, Protocol):
    """What the queue needs from the shared store (:class:`~app.storage.postgres.PostgresStore`)."""

    async def swap(self, record: ExecutionRecord, expected: ExecutionStatus) -> bool: ...

    async def claim(self, record: ExecutionRecord) -> Claim: ...


class RedisQueue:
    """:class:`~app.queue.base.ExecutionQueue` on the stream ``<prefix>:runs``; ``async with``
    makes sure the stream and its group exist and starts the heartbeat."""

    shared = True

    def __init__(
        self, redis: Redis, *, store: Claims, prefix: str, claim_idle_s: float = 30.0
    ) -> None:
        self._redis = redis
        self._store = store
        self._restorer = Restorer(redis, store=store, prefix=prefix, every_s=claim_idle_s)
        self._beat_s = claim_idle_s / 5
        consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._runs = RunStream(
            redis,
            restorer=self._restorer,
            consumer=consumer,
            claim_idle_ms=int(claim_idle_s * 1000),
            beat_s=self._beat_s,
        )
        #: The channel on which cancel requests reach the process holding the run.
        self.control = f"{prefix}:control"
        #: Pause before taking a run again after a failure: short, to be back soon after Redis.
        self._retry_s = min(self._beat_s, RETRY_S)
        self._held: dict[str, str] = {}  # execution id -> entry id
        self._limits = HeldBack()
        self._beating = Background(log)

    async def __aenter__(self) -> Self:
        await self._restorer.create_group()
        await self._runs.refresh_depth()
        self._beating.start(self._heartbeat(), name="redis-queue-heartbeat")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop refreshing held entries (they are taken over once idle, as a dead process's)."""
        await self._beating.aclose(CANCEL_WAIT_S)

    # ---- ExecutionQueue ---------------------------------------------------------------

    async def put(self, record: ExecutionRecord) -> None:
        """Append the run to the stream. The bound is checked before the run is stored
        (``ExecutionService`` reads :meth:`qsize`), so a stored run is never refused; nor
        is it when Redis is unreachable: it is stored, and the sweep queues it."""
        try:
            await self._runs.add(record)
            await self._runs.refresh_depth()
        except (RedisError, OSError):
            log.warning("Redis is unreachable: run %s is stored, queued once it is back", record.id)

    async def get(self, admits: Admits = admit_all) -> ExecutionRecord:
        """The next run, claimed for this process: a ``new`` run as it was queued, or a
        taken-over run left ``running`` by a dead process, as it is stored."""
        task = asyncio.current_task()
        while True:
            if task is not None and task.cancelling():
                # A cancel request was lost in a client library call that completed at the
                # same moment (seen in the Redis pipeline of done()): honour it, or the
                # worker loops on and shutdown hangs.
                raise asyncio.CancelledError
            try:
                record = await self._held_back(admits) or await self._take(admits)
            except Exception:  # Redis or PostgreSQL unreachable: the worker outlives it
                log.warning("taking a run failed; again in %.1f s", self._retry_s, exc_info=True)
                await asyncio.sleep(self._retry_s)
                continue
            if record is not None:
                return record

    async def _take(self, admits: Admits) -> ExecutionRecord | None:
        # While runs are held back, wake up often enough to see a slot free up.
        block_s = min(self._beat_s, RECHECK_S) if self._limits else self._beat_s
        entry = await self._runs.next(block_s)
        if entry is None:
            return None
        entry_id, record, taken_over = entry
        if record.status is S.NEW:
            claim = await self._claim(record, admits)
            if claim is Claim.CLAIMED:
                self._held[record.id] = entry_id
                return record
            if claim is not Claim.GONE:
                self._limits.hold(entry)
                return None
        return await self._settle(entry_id, record.id, taken_over)

    async def _claim(self, record: ExecutionRecord, admits: Admits) -> Claim:
        if not admits(record):  # this process's own view of the limits
            return Claim.WORKFLOW_FULL
        return await self._store.claim(msgspec.structs.replace(record, status=S.RUNNING))

    async def _held_back(self, admits: Admits) -> ExecutionRecord | None:
        """The oldest run held back by a limit that may start now (looked at when a run
        ended here, and every :data:`RECHECK_S`, as other processes end runs too)."""
        for entry in self._limits.due(asyncio.get_running_loop().time()):
            entry_id, record, _ = entry
            claim = await self._claim(record, admits)
            if claim in (Claim.WORKFLOW_FULL, Claim.KEY_TAKEN):
                self._limits.still_held(entry, claim)
                continue
            self._limits.release(entry)
            if claim is Claim.CLAIMED:
                self._held[record.id] = entry_id
                return record
            await self._runs.forget(entry_id, record.id)  # canceled while held back
        return None

    def notify(self) -> None:
        self._limits.recheck = True

    async def done(self, execution_id: str) -> None:
        entry_id = self._held.pop(execution_id, None)
        if entry_id is None:
            return
        try:
            await self._runs.forget(entry_id, execution_id)
        except (RedisError, OSError):  # its entry, if Redis kept it, is skipped once taken over
            log.warning("acknowledging run %s failed", execution_id, exc_info=True)

    async def cancel(self, record: ExecutionRecord) -> bool:
        """Claim the cancel in the store if nobody runs the run (``new`` or ``waiting``),
        else ask its holder. Raises ``IllegalTransition`` if it finished meanwhile, and
        ``BackendUnavailable`` (503) if the holder cannot be asked."""
        status = record.status
        for _ in range(3):
            if status is S.RUNNING:
                break
            canceled = msgspec.structs.replace(record, status=S.CANCELED)
            if await self._store.swap(canceled, expected=status):
                return True
            stored = await self._store.get(record.id)
            status = stored.status if stored is not None else S.UNKNOWN
            check_transition(status, S.CANCELED)
        try:
            await self._redis.publish(self.control, record.id)
        except (RedisError, OSError):
            raise BackendUnavailable(
                "Redis is unreachable: the cancel did not reach the run"
            ) from None
        return False

    async def restore(self) -> None:
        """Queue the runs stored as ``new`` that the stream does not hold. Runs left
        ``running`` need nothing: other processes may be running them, and those whose holder
        died are taken over once their entry is idle."""
        await self._restorer.sweep(grace_ms=0)

    def qsize(self) -> int:
        """Runs queued and not yet taken by a worker, as last read from Redis."""
        return self._runs.depth

    # ---- internals --------------------------------------------------------------------

    async def _settle(
        self, entry_id: str, execution_id: str, taken_over: bool
    ) -> ExecutionRecord | None:
        """An entry whose run is not ``new``: a taken-over run left ``running`` by its dead
        holder is held and handed out (to end ``crashed``); any other (ended, or a
        duplicate entry) is acknowledged."""
        stored = await self._store.get(execution_id) if taken_over else None
        if stored is not None and stored.status is S.RUNNING and execution_id not in self._held:
            self._held[execution_id] = entry_id  # acknowledged by done() once it is crashed
            return stored
        await self._runs.forget(entry_id, execution_id)
        return None

    async def _heartbeat(self) -> None:
        """Keep held entries fresh (a live holder is never taken over) and the depth known."""
        while True:
            await asyncio.sleep(self._beat_s)
            try:
                await self._runs.keep([*self._held.values(), *self._limits.entry_ids()])
                await self._runs.refresh_depth()
                await self._restorer.sweep_if_due()
            except (RedisError, OSError):
                log.warning("Redis queue heartbeat failed", exc_info=True)
