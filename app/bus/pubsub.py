"""One Redis pub/sub connection per process, and its one listen loop.

The event bus (``<prefix>:events``) and the queue's cancel requests (``<prefix>:control``)
both arrive here: each channel has one handler, called with the message's bytes in the
order Redis delivered them. A lost connection is retried; redis-py reconnects and
subscribes every channel again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

Handler = Callable[[bytes], None]

#: How long a stopped task gets to end: a client library may lose a cancel request.
STOP_TIMEOUT_S = 2.0
#: Pause between attempts to reach Redis again after the connection was lost.
RETRY_S = 0.5


class PubSub:
    """``async with PubSub(redis) as pubsub: await pubsub.subscribe(channel, handler)``."""

    def __init__(self, redis: Redis) -> None:
        self._pubsub: Any = redis.pubsub(ignore_subscribe_messages=True)
        self._handlers: dict[str, Handler] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            await stop(self._task)
            self._task = None
        await self._pubsub.aclose()

    async def subscribe(self, channel: str, handler: Handler) -> None:
        """Call ``handler`` with every message published on ``channel`` from the moment
        this returns (the subscription is confirmed by Redis)."""
        self._handlers[channel] = handler
        await self._pubsub.subscribe(channel)
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="redis-pubsub")

    async def _listen(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=None)
            except (RedisError, OSError):
                log.exception("Redis pub/sub connection lost; reconnecting")
                await asyncio.sleep(RETRY_S)
                continue
            if message is not None and message["type"] == "message":
                self._deliver(message["channel"].decode(), message["data"])

    def _deliver(self, channel: str, data: bytes) -> None:
        try:
            self._handlers[channel](data)
        except Exception:  # one bad message must not stop the listener
            log.exception("handling a message on %s failed", channel)


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it, for at most :data:`STOP_TIMEOUT_S`."""
    task.cancel()
    await asyncio.wait([task], timeout=STOP_TIMEOUT_S)
