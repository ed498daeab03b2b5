"""``RunStream``: the shared queue's Redis stream as this process's consumer sees it.

Entries are appended with ``XADD``, read one at a time with ``XREADGROUP``, taken over from
stopped processes with ``XAUTOCLAIM`` once idle for ``claim_idle_ms``, kept fresh with
``XCLAIM ... JUSTID`` while held, and forgotten with ``XACK`` + ``XDEL``. A group Redis lost
(``NOGROUP``) is recreated and refilled from the store (:mod:`app.queue.restore`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from app.messages import encoder
from app.model.records import ExecutionRecord
from app.queue.held_back import Entry
from app.queue.restore import GROUP, Restorer

log = logging.getLogger(__name__)
_decode = msgspec.json.Decoder(ExecutionRecord).decode


class RunStream:
    def __init__(
        self, redis: Redis, *, restorer: Restorer, consumer: str, claim_idle_ms: int, beat_s: float
    ) -> None:
        """``beat_s``: how often stopped processes' entries are looked for."""
        self._redis = redis
        self._restorer = restorer
        self.key = restorer.stream
        self._queued = restorer.queued
        self._consumer = consumer
        self._claim_idle_ms = claim_idle_ms
        self._beat_s = beat_s
        self._taken_over: deque[Entry] = deque()
        self._next_takeover = 0.0
        self._takeover_cursor = "0-0"
        #: Entries queued and not yet read by a consumer, as last read from Redis.
        self.depth = 0

    async def add(self, record: ExecutionRecord) -> None:
        """Append an entry for the run, and note it queued (for the sweep)."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.xadd(self.key, {"record": encoder.encode(record)})
        pipe.sadd(self._queued, record.id)
        await pipe.execute()

    async def next(self, block_s: float) -> Entry | None:
        """A taken-over entry, else a new one (waiting up to ``block_s``)."""
        loop = asyncio.get_running_loop()
        reply: Any = None
        async with self._group_kept():
            if not self._taken_over and loop.time() >= self._next_takeover:
                self._next_takeover = loop.time() + self._beat_s
                await self._take_over()
            if self._taken_over:
                return self._taken_over.popleft()
            reply = await self._redis.xreadgroup(  # RESP2: [[stream, [(id, fields)]]]
                GROUP, self._consumer, {self.key: ">"}, count=1, block=int(block_s * 1000)
            )
        if not reply:
            return None
        entry_id, fields = reply[0][1][0]
        return _entry(entry_id, fields, taken_over=False)

    async def _take_over(self) -> None:
        """Claim the entries of processes that stopped heartbeating."""
        reply = await self._redis.xautoclaim(
            self.key, GROUP, self._consumer, self._claim_idle_ms, self._takeover_cursor
        )
        cursor = reply[0]
        self._takeover_cursor = cursor.decode() if isinstance(cursor, bytes) else cursor
        entries = [_entry(key, fields, taken_over=True) for key, fields in reply[1] if fields]
        if entries:
            log.warning("took over %d runs from stopped workers", len(entries))
        self._taken_over.extend(entries)

    async def forget(self, entry_id: str, execution_id: str) -> None:
        """Acknowledge and delete the entry: no process takes it again."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.xack(self.key, GROUP, entry_id)
        pipe.xdel(self.key, entry_id)
        pipe.srem(self._queued, execution_id)
        await pipe.execute()

    async def keep(self, entry_ids: list[Any]) -> None:
        """Refresh the idle time of the entries this process holds (never taken over)."""
        if entry_ids:
            await self._redis.xclaim(self.key, GROUP, self._consumer, 0, entry_ids, justid=True)

    async def refresh_depth(self) -> None:
        async with self._group_kept():
            pipe = self._redis.pipeline(transaction=False)
            pipe.xlen(self.key)
            pipe.xpending(self.key, GROUP)
            length, pending = await pipe.execute()
            self.depth = length - pending["pending"]

    @contextlib.asynccontextmanager
    async def _group_kept(self) -> AsyncIterator[None]:
        """Redis lost the group (``NOGROUP``: restarted without persistence): recreate it
        and queue again what it lost, then let the caller try again."""
        try:
            yield
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._takeover_cursor = "0-0"
            await self._restorer.recreate()


def _entry(entry_id: bytes | str, fields: dict[bytes, bytes], *, taken_over: bool) -> Entry:
    key = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return key, _decode(fields[b"record"]), taken_over
