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
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, Self

from app.errors import QueueFull
from app.model.records import ExecutionPage, ExecutionQuery, ExecutionRecord
from app.model.status import ExecutionStatus

#: Whether a queued run may start now (its concurrency limits allow it).
Admits = Callable[[ExecutionRecord], bool]


def admit_all(record: ExecutionRecord) -> bool:
    return True


class ExecutionQueue(Protocol):
    #: True when other processes take runs from this queue too: the store's claim then
    #: decides the concurrency limits (SPEC §10), not one process's view.
    shared: bool

    async def put(self, record: ExecutionRecord) -> None:
        """Queue a stored ``new`` run; raises :class:`QueueFull` past the bound."""
        ...

    async def get(self, admits: Admits = admit_all) -> ExecutionRecord:
        """The oldest queued run that ``admits`` accepts, now held by this process; waits
        while there is none. A run refused keeps its place for a later ``get``."""
        ...

    def notify(self) -> None:
        """What ``admits`` decides may have changed (a run ended): look again."""
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
    """Runs queued in this process, first in first out among those its limits admit, at
    most ``bound`` at a time.

    It lives and dies with the process: :meth:`restore` hands runs left ``running`` by the
    previous process to the workers (to end them ``crashed``), then queues the ``new`` ones
    again, oldest first; ``waiting`` runs wait on."""

    shared = False

    def __init__(self, bound: int, *, store: StoredRuns) -> None:
        self._bound = bound
        self._store = store
        self._runs: dict[str, ExecutionRecord] = {}  # in queue order
        self._changed = asyncio.Event()

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
        if len(self._runs) >= self._bound:
            raise QueueFull(f"{self._bound} runs are already queued; retry later")
        self._runs[record.id] = record
        self.notify()

    async def get(self, admits: Admits = admit_all) -> ExecutionRecord:
        while True:
            for record in self._runs.values():
                # A run left ``running`` by a dead process is ended at once, limits or not.
                if record.status is not ExecutionStatus.NEW or admits(record):
                    del self._runs[record.id]
                    return record
            self._changed.clear()
            await self._changed.wait()

    def notify(self) -> None:
        self._changed.set()

    async def done(self, execution_id: str) -> None:
        return None

    async def cancel(self, record: ExecutionRecord) -> bool:
        self._runs.pop(record.id, None)  # one process: a run not running here is nobody's
        return True

    async def restore(self) -> None:
        for status in (ExecutionStatus.RUNNING, ExecutionStatus.NEW):
            page = await self._store.list(ExecutionQuery(status=status, limit=EVERYTHING))
            for record in reversed(page.items):
                await self.put(record)

    def qsize(self) -> int:
        return len(self._runs)
