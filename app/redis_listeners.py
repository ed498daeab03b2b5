"""Stopping the background tasks that listen on Redis (the bus's and the queue's)."""

from __future__ import annotations

import asyncio
from typing import Any

#: How long stopped listeners get to end: a client library may lose a cancel request.
STOP_TIMEOUT_S = 2.0


async def stop(tasks: list[asyncio.Task[None]], pubsub: Any) -> None:
    """Cancel ``tasks`` (waiting for them a bounded time), empty the list, close ``pubsub``."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
    tasks.clear()
    if pubsub is not None:
        await pubsub.aclose()
