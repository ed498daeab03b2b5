"""One client connection as seen by the core: a bounded outbox and a state, no I/O.

Call order, as for a sans-I/O protocol: the core calls :meth:`Connection.deliver` (and
:meth:`~Connection.close` / :meth:`~Connection.abort`); each of them calls the ``wakeup``
callback the transport gave, after which the transport must call
:meth:`~Connection.data_to_send` and write what it returns. ``deliver`` calls it when the
queue becomes non-empty and again when the queue passes a quarter of its bound
(:attr:`~Connection.pressing`): a transport may hold a busy connection's writes back to
batch them, but not then. Once :attr:`~Connection.open`
is False and ``data_to_send`` returns nothing, the transport closes the socket with
:attr:`~Connection.close_code` (WebSocket) or ends the stream (SSE). When ``aborted`` is
True it must stop writing at once, even in the middle of a blocked write.

Slow consumers (SPEC §5.3): a connection whose bytes pass ``limit`` is aborted with
:attr:`CloseCode.SLOW_CONSUMER` and its queue is dropped, so memory stays bounded and
nobody waits for it. The bound counts what is queued *and* the batch the transport took
last, until it asks for the next one: so a transport must write a batch whole into its
socket (waiting while the socket is full) before it calls ``data_to_send`` again, and must
hold no other copy of it. A backlog (resume or replay) is exempt from the bound: it comes
from memory that is already held, and only live messages can grow.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Protocol

from app.model.access import Scope
from app.push.wire import Outgoing

#: Rough per-message bookkeeping cost counted against the bound besides the payload.
OVERHEAD_BYTES = 64


class CloseCode(enum.IntEnum):
    """WebSocket close codes of the push connection (SSE just ends its stream)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    #: The outbound buffer passed ``connection_buffer_bytes`` (a client that stopped reading).
    SLOW_CONSUMER = 4008
    UNAUTHORIZED = 4401


class Segment(Protocol):
    """A run of an execution's messages that grows at the end of an outbox while it is open
    (:class:`app.push.tail.Segment`)."""

    @property
    def start_bytes(self) -> int:
        """Its tail's byte offset where it starts."""

    @property
    def nbytes(self) -> int:
        """Its counted bytes so far."""

    def watch(self, cut_at: int, press_at: int) -> None:
        """Abort its connection once its tail passes ``cut_at`` bytes; call
        :meth:`Connection.press` once it reaches ``press_at``; unless it is closed first."""

    def close(self) -> int:
        """Stop growing (its messages get their ids); returns its counted bytes."""

    def outgoing(self) -> list[Outgoing]:
        """The closed segment's messages as the transport's items."""


class State(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"  # send what is queued, then close
    ABORTED = "aborted"  # close now, drop what is queued


class Connection:
    """A live connection: ``push_ref`` for ``/agents/push``, None for an execution stream."""

    __slots__ = (
        "_backlog_bytes",
        "_open",
        "_outbox",
        "_pressing_at",
        "_queued_bytes",
        "_unsent_bytes",
        "_wakeup",
        "close_code",
        "close_reason",
        "limit",
        "owner",
        "push_ref",
        "scope",
        "state",
    )

    def __init__(
        self,
        *,
        push_ref: str | None,
        owner: str | None,
        limit: int,
        wakeup: Callable[[], None],
        scope: Scope | None = None,
    ) -> None:
        self.push_ref = push_ref
        self.owner = owner
        #: A scoped token's (SPEC §11): what the connection may receive and do.
        self.scope = scope
        self.limit = limit
        self._pressing_at = limit // 4
        self.state = State.OPEN
        self.close_code: int = CloseCode.NORMAL
        self.close_reason = ""
        self._wakeup = wakeup
        self._outbox: list[Outgoing | Segment] = []
        self._open: Segment | None = None  # the last item of the outbox, while it grows
        self._queued_bytes = 0
        self._backlog_bytes = 0
        self._unsent_bytes = 0  # live bytes of the batch the transport is writing

    @property
    def open(self) -> bool:
        return self.state is State.OPEN

    @property
    def aborted(self) -> bool:
        return self.state is State.ABORTED

    @property
    def queued_bytes(self) -> int:
        segment = self._open
        return self._queued_bytes + (segment.nbytes if segment is not None else 0)

    def deliver(self, out: Outgoing, *, backlog: bool = False) -> None:
        """Queue ``out``; ignored once the connection is closing."""
        if self.state is not State.OPEN:
            return
        self.settle()
        size = len(out.payload) + OVERHEAD_BYTES
        self._queued_bytes += size
        if backlog:
            self._backlog_bytes += size
        elif self._queued_bytes - self._backlog_bytes + self._unsent_bytes > self.limit:
            self.abort(CloseCode.SLOW_CONSUMER, "slow consumer: outbound buffer full")
            return
        self._outbox.append(out)
        queued = self._queued_bytes
        if len(self._outbox) == 1 or queued - size < self._pressing_at <= queued:
            self._wakeup()

    def follow(self, segment: Segment) -> bool:
        """Queue a tail's ``segment`` (:mod:`app.push.tail`), which grows until something
        else is queued or the transport takes it; False once the connection is closing."""
        if self.state is not State.OPEN:
            return False
        self.settle()
        self._outbox.append(segment)
        self._open = segment
        live = self._queued_bytes - self._backlog_bytes + self._unsent_bytes
        start = segment.start_bytes
        segment.watch(start - live + self.limit, start - self._queued_bytes + self._pressing_at)
        if len(self._outbox) == 1:
            self._wakeup()
        return True

    def settle(self) -> None:
        """Stop the growing segment, if any: its messages get their ids now, before anything
        queued after them."""
        segment = self._open
        if segment is not None:
            self._open = None
            self._queued_bytes += segment.close()

    def press(self) -> None:
        """The growing segment made the queue :attr:`pressing`: wake the transport."""
        self._wakeup()

    @property
    def pressing(self) -> bool:
        """Is what is queued a quarter of the bound or more (write it without delay)?"""
        return self.queued_bytes >= self._pressing_at

    def data_to_send(self) -> list[Outgoing]:
        """Everything queued, in order; the queue is empty afterwards. The batch counts
        against the bound until the next call (see the module docstring). A batch of one
        segment is the segment's list, which other connections may send too: the caller
        must not change it."""
        self.settle()
        items, self._outbox = self._outbox, []
        self._unsent_bytes = self._queued_bytes - self._backlog_bytes
        self._queued_bytes = self._backlog_bytes = 0
        if len(items) == 1 and not isinstance(items[0], Outgoing):
            return items[0].outgoing()
        out: list[Outgoing] = []
        for item in items:
            if isinstance(item, Outgoing):
                out.append(item)
            else:
                out += item.outgoing()
        return out

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close after what is already queued has been sent."""
        if self.state is State.OPEN:
            self.settle()
            self.state, self.close_code, self.close_reason = State.CLOSING, code, reason
            self._wakeup()

    def abort(self, code: int, reason: str) -> None:
        """Close now, dropping what is queued."""
        if self.state is State.ABORTED:
            return
        self.settle()  # what it held keeps its ids, for a resume
        self.state, self.close_code, self.close_reason = State.ABORTED, code, reason
        self._outbox = []
        self._queued_bytes = self._backlog_bytes = self._unsent_bytes = 0
        self._wakeup()

    def __repr__(self) -> str:
        return f"<Connection push_ref={self.push_ref!r} {self.state.value} {self.queued_bytes}B>"
