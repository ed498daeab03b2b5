"""``CommandDispatcher``: carries out the commands a push connection sends (SPEC §5.1),
decoded by :mod:`app.push.commands`, and queues the one reply each gets: ``pong``, an
``ack`` or an ``error``. It does no socket I/O; its only awaits are service calls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from app.messages import (
    CancelExecution,
    ExecutionSnapshotData,
    Heartbeat,
    Ping,
    SubscribeExecution,
    SubscribeWorkflow,
    UnsubscribeExecution,
    UnsubscribeWorkflow,
)
from app.model.access import Action, Caller
from app.model.records import StoredEvent
from app.push import commands, wire
from app.push.commands import answer
from app.push.connection import CloseCode, Connection
from app.push.registry import Registry
from app.push.runs_feed import RunsFeed

log = logging.getLogger(__name__)


class PushService(Protocol):
    """What the hub needs from :class:`app.service.ExecutionService`. Each method raises
    :class:`~app.errors.NotFound` for an unknown execution or one of another owner."""

    async def snapshot(self, execution_id: str, owner: str | None) -> ExecutionSnapshotData: ...

    async def read_events(
        self, execution_id: str, after: int, owner: str | None
    ) -> list[StoredEvent]: ...

    async def cancel_execution(self, execution_id: str, owner: str | None) -> object:
        """Also raises :class:`~app.errors.IllegalTransition` for a finished run."""
        ...

    async def authorize(self, execution_id: str, caller: Caller, action: Action) -> None:
        """Raises :class:`~app.errors.Forbidden` when a scoped token's ``caller`` may not do
        ``action`` on the run (see :meth:`app.model.access.Caller.require`)."""
        ...


class CommandDispatcher:
    def __init__(
        self,
        *,
        registry: Registry,
        service: PushService,
        runs_feed: RunsFeed,
        clock: Callable[[], float],
        max_frame_bytes: int,
    ) -> None:
        self._registry = registry
        self._service = service
        self._runs_feed = runs_feed
        self._clock = clock
        self._max_frame_bytes = max_frame_bytes

    async def receive(self, conn: Connection, frame: bytes | str) -> None:
        """Handle one inbound frame: at most one reply is queued on ``conn``; a frame over
        ``max_inbound_frame_bytes`` aborts it with 1009 instead."""
        if _too_big(frame, self._max_frame_bytes):
            conn.abort(CloseCode.MESSAGE_TOO_BIG, "message too big")
            return
        command = commands.parse(frame)
        match command:
            case wire.Outgoing():
                conn.deliver(command)
            case Heartbeat():
                pass
            case Ping():
                conn.deliver(wire.PONG)
            case SubscribeExecution(data=data):
                call = self._subscribe(conn, data.executionId, data.after)
                await answer(conn, "subscribe_execution", call, execution_id=data.executionId)
            case UnsubscribeExecution(data=data):
                self._registry.unsubscribe(conn, data.executionId)
                conn.deliver(wire.ack("unsubscribe_execution", data.executionId))
            case CancelExecution(data=data):
                cancel = self._cancel(conn, data.executionId)
                await answer(conn, "cancel_execution", cancel, execution_id=data.executionId)
            case SubscribeWorkflow() | UnsubscribeWorkflow():
                await self._runs_feed.receive(conn, command)

    async def authorize(self, conn: Connection, execution_id: str, action: Action) -> None:
        """Raise unless ``conn``'s scoped token (if it has one) allows ``action`` on the run."""
        if conn.scope is not None:
            await self._service.authorize(execution_id, Caller(conn.owner, conn.scope), action)

    async def _cancel(self, conn: Connection, execution_id: str) -> None:
        await self.authorize(conn, execution_id, "cancel")
        await self._service.cancel_execution(execution_id, conn.owner)

    async def _subscribe(self, conn: Connection, execution_id: str, after: int | None) -> None:
        await self.authorize(conn, execution_id, "read")
        self._registry.subscribe(conn, execution_id, after or 0)  # before reading: no gap
        try:
            if after is None:  # live from now on: only check that it may be seen
                await self._service.snapshot(execution_id, conn.owner)
                logged = []
            else:
                logged = await self._service.read_events(execution_id, after, conn.owner)
        except BaseException:
            self._registry.unsubscribe(conn, execution_id)
            raise
        self._registry.replayed(conn, execution_id, logged, self._clock())


def _too_big(frame: bytes | str, limit: int) -> bool:
    if isinstance(frame, bytes) or len(frame) * 4 <= limit:
        return len(frame) > limit
    return len(frame.encode()) > limit
