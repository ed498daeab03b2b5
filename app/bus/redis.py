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
- **The 5 MiB rule at the hop** (SPEC §5.3): the ``trim`` function the bus is given (the
  push core's size rule) is applied before a message is published, so an oversized payload
  never crosses Redis.
- **Nothing dropped by the sender.** A publish that fails (Redis away) is tried again,
  in order, with a growing pause, until Redis takes it; past :data:`HELD_BYTES` held, the
  oldest messages are dropped (they stay in the log).
- **At most once per subscriber.** Pub/sub keeps nothing: an instance disconnected from
  Redis misses what was published meanwhile. Once subscribed again its subscribers' ``on_gap``
  is called, and the push hub reads what it missed from the store's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

import msgspec
from redis.asyncio import Redis

from app.background import CANCEL_WAIT_S, Background
from app.bus.base import Gap, PushEvent, Subscriber, Subscribers
from app.bus.pubsub import PubSub

log = logging.getLogger(__name__)

#: Payload bytes gathered into one ``PUBLISH`` (a single larger message goes alone).
BATCH_BYTES = 1 << 20
#: Payload bytes held for Redis while it is away; older ones are dropped past this.
HELD_BYTES = 64 << 20
#: First pause before publishing again after a failure; doubled up to RETRY_MAX_S.
RETRY_S = 0.05
RETRY_MAX_S = 1.0
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(list[PushEvent]).decode

#: The size rule applied before the hop: the event to publish (trimmed), or None to drop it.
Trim = Callable[[PushEvent], PushEvent | None]


class RedisBus:
    """:class:`~app.bus.base.EventBus` over the Redis channel ``channel``.

    ``listen``: the process's pub/sub connection, to receive what is published (API
    instances); without it this bus only publishes (a worker). ``async with`` starts the
    sender (and subscribes); leaving it sends what is queued, then stops."""

    def __init__(
        self,
        redis: Redis,
        *,
        channel: str,
        trim: Trim,
        durable: Callable[[], Awaitable[None]],
        listen: PubSub | None = None,
    ) -> None:
        self._redis = redis
        self._channel = channel
        self._trim = trim
        self._durable = durable
        self._listen = listen
        self._subscribers = Subscribers()
        self._outbox: deque[PushEvent] = deque()
        self._wake = asyncio.Event()
        self._sending = False
        self._sender = Background(log)

    async def __aenter__(self) -> Self:
        if self._listen is not None:  # confirmed when this returns: nothing after is missed
            await self._listen.subscribe(
                self._channel, self._received, on_gap=self._subscribers.gap
            )
        self._sender.start(self._send(), name="redis-bus-send")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (waiting up to ``timeout_s``), then stop the sender."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self._outbox or self._sending:
                    self._wake.set()
                    await asyncio.sleep(0.005)
        await self._sender.aclose(CANCEL_WAIT_S)

    # ---- EventBus ---------------------------------------------------------------------

    async def publish(self, event: PushEvent) -> None:
        """Queue ``event`` for the sender; it reaches subscribers (here too) through Redis."""
        fitted = self._trim(event)
        if fitted is not None:
            self._outbox.append(fitted)
            self._wake.set()

    def subscribe(self, subscriber: Subscriber, *, on_gap: Gap | None = None) -> Callable[[], None]:
        return self._subscribers.subscribe(subscriber, on_gap)

    # ---- tasks ------------------------------------------------------------------------

    async def _send(self) -> None:
        delay = RETRY_S
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
                    self._outbox.extendleft(reversed(batch))  # in order, next time
                    log.warning("publishing failed; again in %.2f s", delay, exc_info=True)
                    self._drop_past_bound()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_S)
                else:
                    delay = RETRY_S
                finally:
                    self._sending = False

    def _drop_past_bound(self) -> None:
        held = sum(len(event.payload) for event in self._outbox)
        dropped = 0
        while held > HELD_BYTES and len(self._outbox) > 1:
            held -= len(self._outbox.popleft().payload)
            dropped += 1
        if dropped:
            log.warning("dropped %d push messages held for Redis; they are in the log", dropped)

    def _take(self) -> list[PushEvent]:
        batch = [self._outbox.popleft()]
        size = len(batch[0].payload)
        while self._outbox and size + len(self._outbox[0].payload) <= BATCH_BYTES:
            event = self._outbox.popleft()
            size += len(event.payload)
            batch.append(event)
        return batch

    def _received(self, data: bytes) -> None:
        for event in _decode(data):
            self._subscribers.deliver(event)
