"""The execution queue seam and its embedded implementation (an ``asyncio.Queue``).

Call order for a worker: ``get`` hands over a run, the worker executes it, and ``done``
follows once the run's final (or waiting) state is durable, so a shared queue
(:class:`app.redis_queue.RedisQueue`) can give the run to another process if this one dies
first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from app.errors import QueueFull
from app.model.records import ExecutionRecord

#: Whether a queued run may start now (its concurrency limits allow it).
Admits = Callable[[ExecutionRecord], bool]


def admit_all(record: ExecutionRecord) -> bool:
    return True


class ExecutionQueue(Protocol):
    #: True when other processes share the queue: queued runs outlive this process and
    #: others may be running theirs (so a restart recovers nothing by itself).
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

    def qsize(self) -> int: ...


class LocalQueue:
    """Runs queued in this process, first in first out among those admitted, at most
    ``bound`` at a time."""

    shared = False

    def __init__(self, bound: int) -> None:
        self._bound = bound
        self._runs: dict[str, ExecutionRecord] = {}  # in queue order
        self._changed = asyncio.Event()

    async def put(self, record: ExecutionRecord) -> None:
        if len(self._runs) >= self._bound:
            raise QueueFull(f"{self._bound} runs are already queued; retry later")
        self._runs[record.id] = record
        self.notify()

    async def get(self, admits: Admits = admit_all) -> ExecutionRecord:
        while True:
            for record in self._runs.values():
                if admits(record):
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

    def qsize(self) -> int:
        return len(self._runs)
