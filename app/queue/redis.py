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
that never started runs here; one that was ``running`` is handed to ``recover`` (it ends
``crashed`` with ``executionFinished{crashed}`` logged and published, then acknowledged);
one already ended is just acknowledged.

Cancel reaches the holder through the Redis channel ``<prefix>:control``: every consuming
process listens and cancels the run if it holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from app import redis_listeners
from app.messages import encoder
from app.model.limits import Claim
from app.model.records import ExecutionRecord
from app.model.status import ExecutionStatus, check_transition
from app.queue.base import Admits, admit_all
from app.queue.held_back import RECHECK_S, Entry, HeldBack

log = logging.getLogger(__name__)
S = ExecutionStatus
GROUP = "workers"
_decode = msgspec.json.Decoder(ExecutionRecord).decode

Recover = Callable[[list[ExecutionRecord]], Awaitable[None]]
Cancel = Callable[[str], bool]


class Claims(Protocol):
    """What the queue needs from the shared store (:class:`app.postgres_store.PostgresStore`)."""

    async def get(self, execution_id: str) -> ExecutionRecord | None: ...

    async def swap(self, record: ExecutionRecord, expected: ExecutionStatus) -> bool: ...

    async def claim(self, record: ExecutionRecord) -> Claim: ...


class RedisQueue:
    """:class:`~app.queue.ExecutionQueue` on the stream ``<prefix>:runs``.

    ``await open(consume=...)`` first (``consume``: this process runs workers), then
    :meth:`bind` the service's ``recover`` and the manager's ``cancel`` before any ``get``.
    """

    shared = True

    def __init__(
        self, redis: Redis, *, store: Claims, prefix: str, claim_idle_s: float = 30.0
    ) -> None:
        self._redis = redis
        self._store = store
        self._stream = f"{prefix}:runs"
        self._control = f"{prefix}:control"
        self._consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._claim_idle_ms = int(claim_idle_s * 1000)
        self._beat_s = claim_idle_s / 5
        self._held: dict[str, str] = {}  # execution id -> entry id
        self._limits = HeldBack()
        self._taken_over: deque[Entry] = deque()
        self._next_takeover = 0.0
        self._takeover_cursor = "0-0"
        self._depth = 0
        self._recover: Recover | None = None
        self._cancel: Cancel | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pubsub: Any = None

    def bind(self, *, recover: Recover, cancel: Cancel) -> None:
        self._recover, self._cancel = recover, cancel

    async def open(self, *, consume: bool) -> None:
        await self._create_group()
        await self._refresh_depth()
        if consume:
            self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            await self._pubsub.subscribe(self._control)
            self._tasks.append(asyncio.create_task(self._listen(), name="redis-queue-control"))
        self._tasks.append(asyncio.create_task(self._heartbeat(), name="redis-queue-heartbeat"))

    async def aclose(self) -> None:
        await redis_listeners.stop(self._tasks, self._pubsub)
        self._pubsub = None

    # ---- ExecutionQueue ---------------------------------------------------------------

    async def put(self, record: ExecutionRecord) -> None:
        """Append the run to the stream. The bound is checked before the run is stored
        (``ExecutionService`` reads :meth:`qsize`), so a stored run is never refused."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.xadd(self._stream, {"record": encoder.encode(record)})
        pipe.xlen(self._stream)
        pipe.xpending(self._stream, GROUP)
        _, length, pending = await pipe.execute()
        self._depth = length - pending["pending"]

    async def get(self, admits: Admits = admit_all) -> ExecutionRecord:
        """The next run, claimed for this process; the record is as it was queued."""
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
                log.exception("taking a run failed; retrying in %.1f s", self._beat_s)
                await asyncio.sleep(self._beat_s)
                continue
            if record is not None:
                return record

    async def _take(self, admits: Admits) -> ExecutionRecord | None:
        entry = await self._next()
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
        await self._settle(entry_id, record.id, taken_over)
        return None

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
            await self._forget(entry_id)  # canceled while held back
        return None

    def notify(self) -> None:
        self._limits.recheck = True

    async def done(self, execution_id: str) -> None:
        entry_id = self._held.pop(execution_id, None)
        if entry_id is not None:
            await self._forget(entry_id)

    async def cancel(self, record: ExecutionRecord) -> bool:
        """Claim the cancel in the store if nobody runs the run (``new`` or ``waiting``),
        else ask its holder. Raises ``IllegalTransition`` if it finished meanwhile."""
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
        await self._redis.publish(self._control, record.id)
        return False

    def qsize(self) -> int:
        """Runs queued and not yet taken by a worker, as last read from Redis."""
        return self._depth

    # ---- internals --------------------------------------------------------------------

    async def _next(self) -> Entry | None:
        """A taken-over entry, else a new one (waiting up to a fraction of claim_idle)."""
        loop = asyncio.get_running_loop()
        if not self._taken_over and loop.time() >= self._next_takeover:
            self._next_takeover = loop.time() + self._beat_s
            await self._take_over()
        if self._taken_over:
            return self._taken_over.popleft()
        try:
            # While runs are held back, wake up often enough to see a slot free up.
            block_s = min(self._beat_s, RECHECK_S) if self._limits else self._beat_s
            reply: Any = await self._redis.xreadgroup(  # RESP2: [[stream, [(id, fields)]]]
                GROUP, self._consumer, {self._stream: ">"}, count=1, block=int(block_s * 1000)
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self._create_group()  # Redis lost the stream (restarted without AOF)
            return None
        if not reply:
            return None
        entry_id, fields = reply[0][1][0]
        return _entry(entry_id, fields, taken_over=False)

    async def _take_over(self) -> None:
        """Claim the entries of processes that stopped heartbeating."""
        reply = await self._redis.xautoclaim(
            self._stream, GROUP, self._consumer, self._claim_idle_ms, self._takeover_cursor
        )
        cursor = reply[0]
        self._takeover_cursor = cursor.decode() if isinstance(cursor, bytes) else cursor
        entries = [_entry(key, fields, taken_over=True) for key, fields in reply[1] if fields]
        if entries:
            log.warning("took over %d runs from stopped workers", len(entries))
        self._taken_over.extend(entries)

    async def _settle(self, entry_id: str, execution_id: str, taken_over: bool) -> None:
        """An entry whose run is not ``new``: a taken-over run left ``running`` by its dead
        holder is recovered; any other (ended, or a duplicate entry) is acknowledged."""
        stored = await self._store.get(execution_id) if taken_over else None
        if stored is not None and stored.status is S.RUNNING and execution_id not in self._held:
            assert self._recover is not None, "RedisQueue.bind() was not called"
            self._held[execution_id] = entry_id  # acknowledged by done() once it is crashed
            try:
                await self._recover([stored])
            except BaseException:
                self._held.pop(execution_id, None)  # not refreshed: taken over again later
                raise
            return
        await self._forget(entry_id)

    async def _forget(self, entry_id: str) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.xack(self._stream, GROUP, entry_id)
        pipe.xdel(self._stream, entry_id)
        await pipe.execute()

    async def _create_group(self) -> None:
        with contextlib.suppress(ResponseError):  # BUSYGROUP: another process made it
            await self._redis.xgroup_create(self._stream, GROUP, id="0", mkstream=True)

    async def _refresh_depth(self) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.xlen(self._stream)
        pipe.xpending(self._stream, GROUP)
        length, pending = await pipe.execute()
        self._depth = length - pending["pending"]

    async def _heartbeat(self) -> None:
        """Keep held entries fresh (a live holder is never taken over) and the depth known."""
        while True:
            await asyncio.sleep(self._beat_s)
            try:
                entries: list[Any] = [*self._held.values(), *self._limits.entry_ids()]
                if entries:
                    await self._redis.xclaim(
                        self._stream, GROUP, self._consumer, 0, entries, justid=True
                    )
                await self._refresh_depth()
            except (RedisError, OSError):
                log.exception("Redis queue heartbeat failed")

    async def _listen(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=None)
            except (RedisError, OSError):
                log.exception("Redis control channel lost; reconnecting")
                await asyncio.sleep(1.0)
                continue
            if message is not None and message["type"] == "message" and self._cancel:
                self._cancel(message["data"].decode())


def _entry(entry_id: bytes | str, fields: dict[bytes, bytes], *, taken_over: bool) -> Entry:
    key = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return key, _decode(fields[b"record"]), taken_over
