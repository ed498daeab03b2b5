"""The shared event bus: push messages relayed between processes by Redis pub/sub.

Every message is published once, on one channel, by the process that ran its step; every
API instance subscribes and hands each message to its own hub, which delivers it to the
connections, subscriptions and execution streams it holds. Published messages are
msgspec-encoded :class:`~app.bus.PushEvent` lists (msgpack), several per ``PUBLISH``.

Guarantees, and why:

- **Per-execution order.** One sender task per process publishes in ``publish`` order over
  one connection, and Redis delivers a channel's messages to a subscriber in the order it
  received them. An execution's messages all come from the one process holding the run.
- **Published only once stored.** The sender first awaits the store's ``commit`` (the
  ``durable`` hook), so an instance that subscribes and then reads the log from the shared
  store (SPEC §5.4: execution streams, ``subscribe_execution``) never misses a message
  that was published before its read: no gap, across processes as within one.
- **The 5 MiB rule at the hop** (SPEC §5.3): :func:`app.push.size.fit` trims a message
  before it is published, so an oversized payload never crosses Redis.
- **At most once.** Pub/sub keeps nothing: an instance disconnected from Redis misses what
  was published meanwhile; its clients resume from the stored log (execution ``seq``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app import redis_listeners
from app.bus.base import PushEvent, Subscriber, Subscribers
from app.push.size import fit

if TYPE_CHECKING:
    from app.push.hub import PushHub

log = logging.getLogger(__name__)

#: Payload bytes gathered into one ``PUBLISH`` (a single larger message goes alone).
BATCH_BYTES = 1 << 20
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(list[PushEvent]).decode


class RedisBus:
    """:class:`~app.bus.EventBus` over the Redis channel ``channel``.

    ``await open(listen=...)`` before publishing; ``listen`` subscribes this process (API
    instances; a worker only publishes). ``aclose`` sends what is queued, then stops."""

    def __init__(
        self,
        redis: Redis,
        *,
        channel: str,
        max_message_bytes: int,
        durable: Callable[[], Awaitable[None]],
    ) -> None:
        self._redis = redis
        self._channel = channel
        self._limit = max_message_bytes
        self._durable = durable
        self._subscribers = Subscribers()
        self._outbox: deque[PushEvent] = deque()
        self._wake = asyncio.Event()
        self._sending = False
        self._tasks: list[asyncio.Task[None]] = []
        self._pubsub: Any = None

    async def open(self, *, listen: bool) -> None:
        if listen:
            self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            await self._pubsub.subscribe(self._channel)  # confirmed: nothing after is missed
            self._tasks.append(asyncio.create_task(self._listen(), name="redis-bus-listen"))
        self._tasks.append(asyncio.create_task(self._send(), name="redis-bus-send"))

    async def aclose(self, timeout_s: float = 5.0) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self._outbox or self._sending:
                    self._wake.set()
                    await asyncio.sleep(0.005)
        await redis_listeners.stop(self._tasks, self._pubsub)
        self._pubsub = None

    # ---- EventBus ---------------------------------------------------------------------

    async def publish(self, event: PushEvent) -> None:
        """Queue ``event`` for the sender; it reaches subscribers (here too) through Redis."""
        fitted = fit(event, self._limit)
        if fitted is not None:
            self._outbox.append(fitted)
            self._wake.set()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        return self._subscribers.subscribe(subscriber)

    # ---- tasks ------------------------------------------------------------------------

    async def _send(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                self._sending = True
                batch = self._take()
                try:
                    await self._durable()
                    await self._redis.publish(self._channel, _encode(batch))
                except Exception:
                    log.exception("lost %d push messages: publishing failed", len(batch))
                finally:
                    self._sending = False

    def _take(self) -> list[PushEvent]:
        batch = [self._outbox.popleft()]
        size = len(batch[0].payload)
        while self._outbox and size + len(self._outbox[0].payload) <= BATCH_BYTES:
            event = self._outbox.popleft()
            size += len(event.payload)
            batch.append(event)
        return batch

    async def _listen(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=None)
            except (RedisError, OSError):  # redis-py reconnects and subscribes again
                log.exception("Redis pub/sub connection lost; reconnecting")
                await asyncio.sleep(1.0)
                continue
            if message is None or message["type"] != "message":
                continue
            for event in _decode(message["data"]):
                self._subscribers.deliver(event)


def held_push_refs(hub: PushHub) -> Subscriber:
    """``hub.on_event`` for a bus shared by API instances.

    A message for a pushRef that no session of this instance holds still reaches this
    instance's subscriptions and streams of its execution, but opens no resume buffer here:
    the instance holding that pushRef buffers it (otherwise every instance would buffer
    every pushRef's messages)."""
    sessions = hub.registry.sessions

    def on_event(event: PushEvent) -> None:
        if event.push_ref is not None and event.push_ref not in sessions:
            event = msgspec.structs.replace(event, push_ref=None)
        hub.on_event(event)

    return on_event
