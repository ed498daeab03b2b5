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
- **Runs feeds too.** A run of a workflow followed here (SPEC §11) may have been queued
  through another instance and begun while this one was cut off: after a gap, the store
  is asked for the runs of each followed workflow whose log began since the last event this
  instance heard (less :data:`CLOCK_SKEW_MS`, the processes' clocks may differ), and those it
  does not know are caught up from their start. Until that answer is in, an unknown run of
  a followed workflow whose next event is not its first is caught up from its start too.

"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from typing import TypeVar

import msgspec

from app.bus.base import EventBus, PushEvent
from app.clock import now_ms
from app.messages import TERMINAL
from app.model.records import StoredEvent
from app.push.feed import RunRef

log = logging.getLogger(__name__)

#: Reads an execution's log after a ``seq`` (as :class:`app.push.dispatcher.PushService` does).
ReadLog = Callable[[str, int, str | None], Awaitable[list[StoredEvent]]]

#: Lists a workflow's runs whose log began at an epoch ms or later
#: (:meth:`app.push.feed.WorkflowRuns.started_since`).
StartedSince = Callable[[str, int], Awaitable[list[RunRef]]]

#: How far apart the clocks of this instance and of the processes running runs may be.
CLOCK_SKEW_MS = 5_000

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
    ``followed``: the executions this instance's connections subscribed to or stream;
    ``workflows``: the workflows whose runs feed is followed here, and ``started_since``
    lists their runs (None: no runs feed here); ``clock``: epoch ms."""

    def __init__(
        self,
        *,
        route: Callable[[PushEvent], None],
        holds: Callable[[str], bool],
        followed: Callable[[], Iterable[str]],
        read: ReadLog,
        workflows: Callable[[], Collection[str]] = frozenset,
        started_since: StartedSince | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._route = route
        self._holds = holds
        self._followed = followed
        self._read = read
        self._workflows = workflows
        self._started_since = started_since
        self._clock = clock
        #: When the last event came from the bus (epoch ms).
        self._heard_at = clock()
        #: While set: a gap's runs of followed workflows are being listed (since then).
        self._missed_since: int | None = None
        self._gaps = 0
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
        self._heard_at = self._clock()
        self._take(event)

    def _take(self, event: PushEvent) -> None:
        if event.seq and not self._next_in_order(event):
            return
        if event.push_ref is not None and not self._holds(event.push_ref):
            event = msgspec.structs.replace(event, push_ref=None)
        self._route(event)

    def on_gap(self) -> None:
        """The bus may have missed events: catch up every open execution from the log."""
        for execution_id in self._followed():
            self.expect(execution_id, None, None, None)
        if self._started_since is not None:
            since = self._heard_at - CLOCK_SKEW_MS
            missed = self._missed_since
            self._missed_since = since if missed is None else min(missed, since)
            self._gaps += 1
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
        if seen is None and seq > 1 and self._begun_in_gap(event):
            seen = _Seen(0, event.push_ref, event.owner, event.workflow_id)
            _remember(self._open, execution_id, seen)
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

    def _begun_in_gap(self, event: PushEvent) -> bool:
        """Is ``event``'s run, unknown here, one of a followed workflow that may have begun
        during a gap whose runs are still being listed?"""
        if self._missed_since is None or event.workflow_id is None:
            return False
        return event.workflow_id in self._workflows()

    def _catch_up(self, execution_ids: Iterable[str]) -> None:
        self._behind.update(execution_ids)
        if self._catching_up is None or self._catching_up.done():
            self._catching_up = asyncio.get_running_loop().create_task(self._read_behind())

    async def _read_behind(self) -> None:
        await self._list_missed()
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
                push_ref, owner, workflow = seen.push_ref, seen.owner, seen.workflow_id
                self._take(
                    PushEvent(
                        execution_id, e.seq, e.type, e.payload, push_ref, False, owner, workflow
                    )
                )

    async def _list_missed(self) -> None:
        """Expect the runs of followed workflows begun during the gaps (to be read behind)."""
        while self._missed_since is not None and self._started_since is not None:
            gaps, since = self._gaps, self._missed_since
            try:
                for workflow_id in list(self._workflows()):
                    runs = await self._started_since(workflow_id, since)
                    self._expect_missed(workflow_id, runs)
            except Exception:  # the store is away too: the next gap tries again
                log.warning("listing the runs begun during a gap failed", exc_info=True)
                return
            if gaps == self._gaps:  # no gap since: what it missed is listed
                self._missed_since = None

    def _expect_missed(self, workflow_id: str, runs: list[RunRef]) -> None:
        for run in reversed(runs):  # oldest first
            if run.execution_id not in self._open and run.execution_id not in self._ended:
                self.expect(run.execution_id, run.push_ref, run.owner, workflow_id)
                self._behind.add(run.execution_id)


V = TypeVar("V")


def _remember(entries: OrderedDict[str, V], key: str, value: V) -> None:
    entries[key] = value
    entries.move_to_end(key)
    while len(entries) > REMEMBERED:
        entries.popitem(last=False)
