"""Events from a bus shared by API instances (Redis pub/sub), before the hub routes them.

- **Buffers only where the pushRef is held.** A message for a pushRef no session of this
  instance holds still reaches this instance's subscriptions and streams of its execution,
  but opens no resume buffer here: the instance holding that pushRef buffers it (otherwise
  every instance would buffer every pushRef's messages).
- **Nothing missed across a Redis outage.** Pub/sub keeps nothing for an absent subscriber.
  For each execution it has seen and not seen end, this instance knows the last ``seq`` it
  routed. When the bus says it may have missed events (``on_gap``), or an execution's next
  event skips a ``seq``, the missed part is read from the store's log (each message is
  logged before it is published) and routed in order. A message that comes again (a
  publisher retrying after the outage) is not routed twice. Runs this instance has not seen
  yet are caught up from their start too: those queued through it (:meth:`expect`), and
  those its connections subscribed to or stream.

"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import msgspec

from app.bus.base import EventBus, PushEvent
from app.messages import TERMINAL
from app.model.records import StoredEvent

log = logging.getLogger(__name__)

#: Reads an execution's log after a ``seq`` (as :class:`app.push.dispatcher.PushService` does).
ReadLog = Callable[[str, int, str | None], Awaitable[list[StoredEvent]]]

#: Executions remembered (open ones, and ended ones for late duplicates), the oldest forgotten.
REMEMBERED = 10_000


@dataclass(slots=True)
class _Seen:
    last_seq: int
    push_ref: str | None
    owner: str | None
    workflow_id: str | None = None


class RemoteEvents:
    """``route``: the hub's router; ``holds``: does a session here hold this pushRef?
    ``followed``: the executions this instance's connections subscribed to or stream."""

    def __init__(
        self,
        *,
        route: Callable[[PushEvent], None],
        holds: Callable[[str], bool],
        followed: Callable[[], Iterable[str]],
        read: ReadLog,
    ) -> None:
        self._route = route
        self._holds = holds
        self._followed = followed
        self._read = read
        self._subscribed = False
        self._open: OrderedDict[str, _Seen] = OrderedDict()
        self._ended: OrderedDict[str, int] = OrderedDict()
        self._behind: set[str] = set()
        self._catching_up: asyncio.Task[None] | None = None

    def subscribe_to(self, bus: EventBus) -> Callable[[], None]:
        """Take the events of the shared ``bus``; returns the unsubscribe function."""
        self._subscribed = True
        return bus.subscribe(self.on_event, on_gap=self.on_gap)

    def expect(
        self,
        execution_id: str,
        push_ref: str | None,
        owner: str | None,
        workflow_id: str | None,
    ) -> None:
        """A run queued through this instance: a gap catches it up from its start until its
        end is routed here, to its pushRef and to its workflow's runs feed (nothing to do
        unless this instance is on a shared bus)."""
        if self._subscribed and execution_id not in self._open | self._ended.keys():
            _remember(self._open, execution_id, _Seen(0, push_ref, owner, workflow_id))

    def on_event(self, event: PushEvent) -> None:
        """The bus subscriber."""
        if event.seq and not self._next_in_order(event):
            return
        if event.push_ref is not None and not self._holds(event.push_ref):
            event = msgspec.structs.replace(event, push_ref=None)
        self._route(event)

    def on_gap(self) -> None:
        """The bus may have missed events: catch up every open execution from the log."""
        for execution_id in self._followed():
            self.expect(execution_id, None, None, None)
        log.info("catching up %d executions from the log", len(self._open))
        self._catch_up(list(self._open))

    async def aclose(self) -> None:
        if self._catching_up is not None:
            self._catching_up.cancel()
            await asyncio.gather(self._catching_up, return_exceptions=True)

    def _next_in_order(self, event: PushEvent) -> bool:
        """Note ``event`` as routed if it is the next of its execution (or the first seen);
        False for one routed already, or one after a gap (then read from the log)."""
        execution_id, seq = event.execution_id, event.seq
        if seq <= self._ended.get(execution_id, 0):
            return False
        seen = self._open.get(execution_id)
        if seen is not None and seq != seen.last_seq + 1:
            if seq > seen.last_seq:
                self._catch_up((execution_id,))
            return False
        if event.type == TERMINAL:
            self._open.pop(execution_id, None)
            _remember(self._ended, execution_id, seq)
        else:
            seen = _Seen(seq, event.push_ref, event.owner, event.workflow_id)
            _remember(self._open, execution_id, seen)
        return True

    def _catch_up(self, execution_ids: Iterable[str]) -> None:
        self._behind.update(execution_ids)
        if self._catching_up is None or self._catching_up.done():
            self._catching_up = asyncio.get_running_loop().create_task(self._read_behind())

    async def _read_behind(self) -> None:
        while self._behind:
            execution_id = self._behind.pop()
            seen = self._open.get(execution_id)
            if seen is None:
                continue
            try:
                logged = await self._read(execution_id, seen.last_seq, None)
            except Exception:  # the store is away too: the next gap or event tries again
                log.warning("catching up %s from the log failed", execution_id, exc_info=True)
                continue
            for e in logged:
                push_ref, owner, workflow_id = seen.push_ref, seen.owner, seen.workflow_id
                self.on_event(
                    PushEvent(
                        execution_id, e.seq, e.type, e.payload, push_ref, False, owner, workflow_id
                    )
                )


V = TypeVar("V")


def _remember(entries: OrderedDict[str, V], key: str, value: V) -> None:
    entries[key] = value
    entries.move_to_end(key)
    while len(entries) > REMEMBERED:
        entries.popitem(last=False)
