"""The two kinds of receiver the registry routes to: a pushRef :class:`Session` and an
:class:`ExecutionStream`.

A session is the server side of one pushRef. It outlives its connections: it keeps the
resume buffer and the subscriptions, and it has at most one live :class:`Connection`
(n8n's rule: a new connection with the same pushRef closes the old one, and the old one's
deregistration does not remove the new one). While its connection is live it follows its
executions through their tails (:mod:`app.push.tail`); without one, and while a
subscription replays the log, messages reach it one by one (:meth:`Session.offer`).
"""

from __future__ import annotations

from collections.abc import Iterable

from app.bus.base import PushEvent
from app.messages import BINARY_TYPES
from app.model.access import Scope, sees
from app.push import wire
from app.push.buffers import ResumeBuffer
from app.push.connection import CloseCode, Connection
from app.push.subscription import Subscription
from app.push.tail import TailKey, Tails


def visible(event: PushEvent, owner: str | None, scope: Scope | None = None) -> bool:
    """May a connection of ``owner`` (None: API keys are off), limited to ``scope`` if it
    holds a scoped token, see ``event``? (:func:`app.model.access.sees`)"""
    return sees(owner, scope, event.execution_id, event.workflow_id, event.owner)


def taken_over(session: Session, conn: Connection) -> bool:
    """Is ``conn`` another caller than the one ``session`` was buffering for?"""
    if session.owner is None and session.scope is None:
        return False  # opened by a message before any connection: buffered for whoever comes
    return (session.owner, session.scope) != (conn.owner, conn.scope)


def _outgoing(event: PushEvent, event_id: int) -> wire.Outgoing:
    return wire.Outgoing(event.payload, event.type in BINARY_TYPES, event_id)


class Session:
    """One pushRef: its resume buffer, its subscriptions, its live connection if any, and
    the executions it follows by tail while that connection lives."""

    __slots__ = (
        "buffer",
        "connection",
        "idle_since",
        "owner",
        "push_ref",
        "scope",
        "subscriptions",
        "tails",
    )

    def __init__(self, push_ref: str, buffer: ResumeBuffer, now: float) -> None:
        self.push_ref = push_ref
        self.buffer = buffer
        self.connection: Connection | None = None
        self.owner: str | None = None
        self.scope: Scope | None = None
        self.subscriptions: dict[str, Subscription] = {}
        self.idle_since = now
        #: The keys of the tails it follows (made when needed: most sessions sit idle).
        self.tails: set[TailKey] | None = None

    def offer(self, event: PushEvent, now: float) -> None:
        """Send a live ``event`` (through its subscription, if any)."""
        if not visible(event, self.owner, self.scope):
            return
        sub = self.subscriptions.get(event.execution_id)
        if sub is None or sub.offer(event):
            self._emit_one(event, now)

    def _emit_one(self, event: PushEvent, now: float, *, backlog: bool = False) -> None:
        """Give ``event`` the next id, keep it for resume and queue it on the connection."""
        if self.connection is not None:
            self.connection.settle()  # what its tails queued before gets the earlier ids
        event_id = self.buffer.append(event, now)
        if self.connection is not None:
            self.connection.deliver(_outgoing(event, event_id), backlog=backlog)

    def emit(self, events: Iterable[PushEvent], now: float, *, backlog: bool = False) -> None:
        for event in events:
            self._emit_one(event, now, backlog=backlog)

    def join(self, tails: Tails, key: TailKey, floor: int) -> None:
        """Follow the tail ``key`` on the live connection, from ``seq > floor``."""
        assert self.connection is not None
        tails.get_or_make(key).join(self.push_ref, self.connection, self.buffer, floor)
        if self.tails is None:
            self.tails = set()
        self.tails.add(key)

    def part(self, tails: Tails, execution_id: str) -> None:
        """Stop following ``execution_id`` by tail, as subscriber and as the run's pushRef."""
        for key in ((execution_id, None), (execution_id, self.push_ref)):
            if self.tails is not None and key in self.tails:
                self.tails.discard(key)
                tail = tails.get(key)
                if tail is not None:
                    tail.leave(self.push_ref)

    def resume(self, conn: Connection, last_id: int, now: float) -> None:
        """Queue on ``conn`` what it missed after ``last_id``, or ``resumeFailed``."""
        missed = self.buffer.after(last_id, now)
        if missed is None:
            conn.deliver(wire.resume_failed(last_id), backlog=True)
            return
        for event_id, event in missed:
            if visible(event, conn.owner, conn.scope):
                conn.deliver(_outgoing(event, event_id), backlog=True)


class ExecutionStream:
    """A connection following one execution; its cursor is the execution ``seq``."""

    __slots__ = ("conn", "execution_id", "sub")

    def __init__(self, conn: Connection, execution_id: str, after: int) -> None:
        self.conn = conn
        self.execution_id = execution_id
        self.sub = Subscription(after)

    def emit(self, events: Iterable[PushEvent], *, backlog: bool = False) -> None:
        for event in events:
            self.conn.deliver(wire.Outgoing(event.payload, False, event.seq), backlog=backlog)
        if self.sub.done:
            self.conn.close(CloseCode.NORMAL, "execution finished")
