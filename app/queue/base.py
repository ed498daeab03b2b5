"""The execution queue seam and its embedded implementation (an ``asyncio.Queue``).

Call order for a worker: ``get`` hands over a run, the worker executes it, and ``done``
follows once the run's final (or waiting) state is durable, so a shared queue
(:class:`app.redis_queue.RedisQueue`) can give the run to another process if this one dies
first.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from app.errors import QueueFull
from app.model.records import ExecutionRecord


class ExecutionQueue(Protocol):
    #: True when other processes share the queue: queued runs outlive this process and
    #: others may be running theirs (so a restart recovers nothing by itself).
    shared: bool

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

    def qsize(self) -> int: ...


class LocalQueue:
    """Runs queued in this process, first in first out, at most ``bound`` at a time."""

    shared = False

    def __init__(self, bound: int) -> None:
        self._queue: asyncio.Queue[ExecutionRecord] = asyncio.Queue(maxsize=bound)

    async def put(self, record: ExecutionRecord) -> None:
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            raise QueueFull(f"{self._queue.maxsize} runs are already queued; retry later") from None

    async def get(self) -> ExecutionRecord:
        return await self._queue.get()

    async def done(self, execution_id: str) -> None:
        return None

    async def cancel(self, record: ExecutionRecord) -> bool:
        return True  # one process: a run not running here is nobody's

    def qsize(self) -> int:
        return self._queue.qsize()
