"""The execution queue seam and its embedded implementation (an ``asyncio.Queue``).

Call order for a worker: ``get`` hands over a run, the worker executes it, and ``done``
follows once the run's final (or waiting) state is durable, so a shared queue
(:class:`app.queue.redis.RedisQueue`) can give the run to another process if this one dies
first. ``get`` hands over two kinds of run: a ``new`` one to execute, and a ``running`` one
whose process died, which the worker ends ``crashed``.

Before the workers start, ``restore`` queues again what the queue lost and the store still
holds (the store is the source of truth). Every queue is an async context manager.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Protocol, Self

from app.errors import QueueFull
from app.model.records import ExecutionPage, ExecutionQuery, ExecutionRecord
from app.model.status import ExecutionStatus


class ExecutionQueue(Protocol):
    async def put(self, record: ExecutionRecord) -> None:
        """Queue a stored ``new`` run; raises :class:`QueueFull` past the bound."""
        ...

    async def get(self) -> ExecutionRecord:
        """The oldest queued run, now held by this process; waits while there is none."""
        ...

    async def done(self, execution_id: str) -> None:
        """The held run's final or waiting state is durable: let the queue forget it."""
        ...

    async def cancel(self, record: ExecutionRecord) -> bool:
        """Withdraw a run this process does not hold before it is ended ``canceled``: True
        when the caller ends it; False when the process holding it was asked to cancel it
        (that process ends it)."""
        ...

    async def restore(self) -> None:
        """Queue again the stored runs this queue lost (called before the workers start)."""
        ...

    def qsize(self) -> int: ...


class StoredRuns(Protocol):
    """What a queue reads from the store to restore its runs."""

    async def list(self, query: ExecutionQuery) -> ExecutionPage: ...


#: A ``limit`` that lists every matching run.
EVERYTHING = 1 << 62


class LocalQueue:
    """Runs queued in this process, first in first out, at most ``bound`` at a time.

    It lives and dies with the process: :meth:`restore` hands runs left ``running`` by the
    previous process to the workers (to end them ``crashed``), then queues the ``new`` ones
    again, oldest first; ``waiting`` runs wait on."""

    def __init__(self, bound: int, *, store: StoredRuns) -> None:
        self._queue: asyncio.Queue[ExecutionRecord] = asyncio.Queue(maxsize=bound)
        self._store = store
        #: Runs canceled while queued: skipped when their turn comes.
        self._dropped: set[str] = set()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def put(self, record: ExecutionRecord) -> None:
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            raise QueueFull(f"{self._queue.maxsize} runs are already queued; retry later") from None

    async def get(self) -> ExecutionRecord:
        while True:
            record = await self._queue.get()
            if record.id not in self._dropped:
                return record
            self._dropped.discard(record.id)

    async def done(self, execution_id: str) -> None:
        return None

    async def cancel(self, record: ExecutionRecord) -> bool:
        if record.status is ExecutionStatus.NEW:
            self._dropped.add(record.id)
        return True  # one process: a run not running here is nobody's

    async def restore(self) -> None:
        for status in (ExecutionStatus.RUNNING, ExecutionStatus.NEW):
            page = await self._store.list(ExecutionQuery(status=status, limit=EVERYTHING))
            for record in reversed(page.items):
                await self.put(record)

    def qsize(self) -> int:
        return self._queue.qsize()
