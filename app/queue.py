"""The execution queue seam and its embedded implementation (an ``asyncio.Queue``)."""

from __future__ import annotations

import asyncio
from typing import Protocol

from app.errors import QueueFull
from app.store import ExecutionRecord


class ExecutionQueue(Protocol):
    def put(self, record: ExecutionRecord) -> None:
        """Queue a stored ``new`` run; raises :class:`QueueFull` past the bound."""
        ...

    async def get(self) -> ExecutionRecord:
        """The oldest queued run; waits while there is none."""
        ...

    def qsize(self) -> int: ...


class LocalQueue:
    """Runs queued in this process, first in first out, at most ``bound`` at a time."""

    def __init__(self, bound: int) -> None:
        self._queue: asyncio.Queue[ExecutionRecord] = asyncio.Queue(maxsize=bound)

    def put(self, record: ExecutionRecord) -> None:
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            raise QueueFull(f"{self._queue.maxsize} runs are already queued; retry later") from None

    async def get(self) -> ExecutionRecord:
        return await self._queue.get()

    def qsize(self) -> int:
        return self._queue.qsize()
