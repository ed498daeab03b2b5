"""One Redis pub/sub connection per process, and its one listen loop.

The event bus (``<prefix>:events``) and the queue's cancel requests (``<prefix>:control``)
both arrive here: each channel has one handler, called with the message's bytes in the
order Redis delivered them. A lost connection is replaced by a new one subscribing every
channel again (retried until Redis answers). Pub/sub keeps nothing for an absent
subscriber, so once a channel is subscribed again its ``on_gap`` callback says that
messages may have been missed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.background import CANCEL_WAIT_S, Background

log = logging.getLogger(__name__)

Handler = Callable[[bytes], None]
Gap = Callable[[], None]

#: Pause between attempts to reach Redis again after the connection was lost.
RETRY_S = 0.25


class PubSub:
    """``async with PubSub(redis) as pubsub: await pubsub.subscribe(channel, handler)``."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pubsub: Any = redis.pubsub(ignore_subscribe_messages=True)
        self._handlers: dict[str, Handler] = {}
        self._gaps: dict[str, Gap] = {}
        self._listening = Background(log)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._listening.aclose(CANCEL_WAIT_S)
        await self._pubsub.aclose()

    async def subscribe(self, channel: str, handler: Handler, *, on_gap: Gap | None = None) -> None:
        """Call ``handler`` with every message published on ``channel`` from the moment
        this returns (the subscription is confirmed by Redis), and ``on_gap`` each time the
        channel is subscribed again after the connection was lost."""
        self._handlers[channel] = handler
        if on_gap is not None:
            self._gaps[channel] = on_gap
        await self._pubsub.subscribe(channel)
        if not self._listening:
            self._listening.start(self._listen(), name="redis-pubsub")

    async def _listen(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=None)
            except (RedisError, OSError):
                log.warning("Redis pub/sub connection lost; reconnecting", exc_info=True)
                await self._resubscribe()
                continue
            if message is not None and message["type"] == "message":
                self._deliver(message["channel"].decode(), message["data"])

    async def _resubscribe(self) -> None:
        """Subscribe every channel again on a new connection (a connection redis-py itself
        reconnected was seen to stop delivering), then call each channel's ``on_gap``."""
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()
        while True:
            await asyncio.sleep(RETRY_S)
            self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await self._pubsub.subscribe(*self._handlers)
                break
            except (RedisError, OSError):
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.aclose()
        log.warning("Redis pub/sub subscribed again; what was missed is read from the log")
        for gap in list(self._gaps.values()):
            gap()

    def _deliver(self, channel: str, data: bytes) -> None:
        try:
            self._handlers[channel](data)
        except Exception:  # one bad message must not stop the listener
            log.exception("handling a message on %s failed", channel)
