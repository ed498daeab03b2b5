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


class State(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"  # send what is queued, then close
    ABORTED = "aborted"  # close now, drop what is queued


class Connection:
    """A live connection: ``push_ref`` for ``/agents/push``, None for an execution stream."""

    __slots__ = (
        "_backlog_bytes",
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
        self._outbox: list[Outgoing] = []
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
        return self._queued_bytes

    def deliver(self, out: Outgoing, *, backlog: bool = False) -> None:
        """Queue ``out``; ignored once the connection is closing."""
        if self.state is not State.OPEN:
            return
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

    @property
    def pressing(self) -> bool:
        """Is what is queued a quarter of the bound or more (write it without delay)?"""
        return self._queued_bytes >= self._pressing_at

    def data_to_send(self) -> list[Outgoing]:
        """Everything queued, in order; the queue is empty afterwards. The batch counts
        against the bound until the next call (see the module docstring)."""
        out, self._outbox = self._outbox, []
        self._unsent_bytes = self._queued_bytes - self._backlog_bytes
        self._queued_bytes = self._backlog_bytes = 0
        return out

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close after what is already queued has been sent."""
        if self.state is State.OPEN:
            self.state, self.close_code, self.close_reason = State.CLOSING, code, reason
            self._wakeup()

    def abort(self, code: int, reason: str) -> None:
        """Close now, dropping what is queued."""
        if self.state is State.ABORTED:
            return
        self.state, self.close_code, self.close_reason = State.ABORTED, code, reason
        self._outbox = []
        self._queued_bytes = self._backlog_bytes = self._unsent_bytes = 0
        self._wakeup()

    def __repr__(self) -> str:
        return f"<Connection push_ref={self.push_ref!r} {self.state.value} {self._queued_bytes}B>"
