"""Who receives which message: pushRef sessions, their subscriptions, execution streams.

A :class:`Session` is the server side of one pushRef. It outlives its connections: it keeps
the resume buffer and the subscriptions, and it has at most one live :class:`Connection`
(n8n's rule: a new connection with the same pushRef closes the old one, and the old one's
deregistration does not remove the new one). A session without a connection keeps
buffering; :meth:`Registry.sweep` forgets it once it has been idle for the buffer's age.

An execution stream (``/agents/executions/{id}/stream``) is a connection that follows one
execution; its cursor is the execution ``seq`` and it closes after ``executionFinished``.

Every message passes the size rule (:func:`app.push.size.fit`) once, on its way in, so all
receivers share the same bytes. Events of an execution reach a session when the run was
started with its pushRef, or when it subscribed; broadcasts reach every session. With API
keys on, a connection only sees events of its own owner.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from app.bus.base import PushEvent
from app.messages import BINARY_TYPES
from app.model.access import Scope
from app.model.records import StoredEvent
from app.push import wire
from app.push.buffers import ResumeBuffer
from app.push.connection import CloseCode, Connection
from app.push.feed import Feeds
from app.push.size import fit
from app.push.subscription import Subscription, visible
from app.settings import Settings


def _outgoing(event: PushEvent, event_id: int) -> wire.Outgoing:
    return wire.Outgoing(event.payload, event.type in BINARY_TYPES, event_id)


def _taken_over(session: Session, conn: Connection) -> bool:
    """Is ``conn`` another caller than the one ``session`` was buffering for?"""
    if session.owner is None and session.scope is None:
        return False  # opened by a message before any connection: buffered for whoever comes
    return (session.owner, session.scope) != (conn.owner, conn.scope)


class Session:
    """One pushRef: its resume buffer, its subscriptions and its live connection, if any."""

    __slots__ = (
        "buffer",
        "connection",
        "idle_since",
        "owner",
        "push_ref",
        "scope",
        "subscriptions",
    )

    def __init__(self, push_ref: str, buffer: ResumeBuffer, now: float) -> None:
        self.push_ref = push_ref
        self.buffer = buffer
        self.connection: Connection | None = None
        self.owner: str | None = None
        self.scope: Scope | None = None
        self.subscriptions: dict[str, Subscription] = {}
        self.idle_since = now

    def offer(self, event: PushEvent, now: float) -> None:
        """Send a live ``event`` (through its subscription, if any)."""
        if not visible(event, self.owner, self.scope):
            return
        sub = self.subscriptions.get(event.execution_id)
        if sub is None or sub.offer(event):
            self._emit_one(event, now)

    def _emit_one(self, event: PushEvent, now: float, *, backlog: bool = False) -> None:
        """Give ``event`` the next id, keep it for resume and queue it on the connection."""
        event_id = self.buffer.append(event, now)
        if self.connection is not None:
            self.connection.deliver(_outgoing(event, event_id), backlog=backlog)

    def emit(self, events: Iterable[PushEvent], now: float, *, backlog: bool = False) -> None:
        for event in events:
            self._emit_one(event, now, backlog=backlog)

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


class Registry:
    """All sessions and execution streams of one process. Times are monotonic seconds."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sessions: dict[str, Session] = {}
        self.streams: dict[Connection, ExecutionStream] = {}
        self._stream_index: dict[str, set[ExecutionStream]] = {}
        self._subscribers: dict[str, set[str]] = {}  # execution id -> pushRefs
        self.feeds = Feeds(settings)

    # ---- connections ----------------------------------------------------------------------

    def register(self, conn: Connection, last_event_id: int | None, now: float) -> None:
        """Make ``conn`` the live connection of its pushRef, closing the previous one; then
        queue what it missed after ``last_event_id`` (None: a fresh start, live only)."""
        assert conn.push_ref is not None
        session = self.sessions.get(conn.push_ref)
        if session is not None and _taken_over(session, conn):
            self._forget(session)  # another key's (or token's) pushRef: nothing carries over
            session = None
        session = session or self._session(conn.push_ref, now)
        if session.connection is not None:
            session.connection.abort(CloseCode.NORMAL, "replaced by a newer connection")
        session.connection, session.owner, session.scope = conn, conn.owner, conn.scope
        if last_event_id is not None:
            session.resume(conn, last_event_id, now)

    def deregister(self, conn: Connection, now: float) -> None:
        """Forget ``conn`` (idempotent); a newer connection of its pushRef stays."""
        session = self.sessions.get(conn.push_ref or "")
        if session is not None and session.connection is conn:
            session.connection = None
            session.idle_since = now
        self.feeds.drop(conn, now)
        stream = self.streams.pop(conn, None)
        if stream is not None:
            self._stream_index[stream.execution_id].discard(stream)
            if not self._stream_index[stream.execution_id]:
                del self._stream_index[stream.execution_id]

    def has(self, push_ref: str) -> bool:
        """Is a connection of ``push_ref`` live?"""
        session = self.sessions.get(push_ref)
        return session is not None and session.connection is not None

    def followed(self) -> set[str]:
        """The executions subscribed to or streamed by a connection here."""
        return self._subscribers.keys() | self._stream_index.keys()

    def connections(self) -> list[Connection]:
        live = [s.connection for s in self.sessions.values() if s.connection is not None]
        return live + list(self.streams) + list(self.feeds.streams)

    # ---- events ---------------------------------------------------------------------------

    def route(self, event: PushEvent, now: float) -> None:
        """Deliver one event from the bus to everyone who should get it."""
        fitted = fit(event, self.settings.max_message_bytes)
        if fitted is None:
            return
        if fitted.broadcast:
            self._broadcast(fitted, now)
            return
        targets = self._subscribers.get(fitted.execution_id, set())
        if fitted.push_ref is not None and fitted.push_ref not in targets:
            self._send(fitted.push_ref, fitted, now)
        for push_ref in [*targets, *self.feeds.route(fitted, now, targets)]:
            self._send(push_ref, fitted, now)
        for stream in list(self._stream_index.get(fitted.execution_id, ())):
            if stream.sub.offer(fitted):
                stream.emit((fitted,))

    def _send(self, push_ref: str, event: PushEvent, now: float) -> None:
        session = self.sessions.get(push_ref) or self._session(push_ref, now)
        session.offer(event, now)
        sub = session.subscriptions.get(event.execution_id)
        if sub is not None and sub.done:
            self._unsubscribe(session, event.execution_id)

    def _broadcast(self, event: PushEvent, now: float) -> None:
        for session in list(self.sessions.values()):
            session.offer(event, now)

    # ---- subscriptions --------------------------------------------------------------------

    def subscribe(self, conn: Connection, execution_id: str, after: int) -> None:
        """Start following ``execution_id`` from ``seq > after`` (replay mode until
        :meth:`replayed`: live events are held, so read the log after this call)."""
        session = self.live_session(conn)
        if session is None:
            return
        session.subscriptions[execution_id] = Subscription(after)
        self._subscribers.setdefault(execution_id, set()).add(session.push_ref)

    def replayed(
        self, conn: Connection, execution_id: str, logged: Sequence[StoredEvent], now: float
    ) -> None:
        """Emit the logged events (read after :meth:`subscribe`), then the held live ones."""
        session = self.live_session(conn)
        sub = session.subscriptions.get(execution_id) if session else None
        if session is None or sub is None or not sub.replaying:
            return
        logged_events = self._fitted(execution_id, logged, conn)
        session.emit(sub.replay(logged_events), now, backlog=True)
        if sub.done:
            self._unsubscribe(session, execution_id)

    def unsubscribe(self, conn: Connection, execution_id: str) -> None:
        session = self.live_session(conn)
        if session is not None:
            self._unsubscribe(session, execution_id)

    # ---- execution streams ----------------------------------------------------------------

    def open_stream(self, conn: Connection, execution_id: str, after: int) -> None:
        """Register ``conn`` as a stream of ``execution_id`` from ``seq > after`` (replay mode
        until :meth:`stream_replayed`)."""
        stream = ExecutionStream(conn, execution_id, after)
        self.streams[conn] = stream
        self._stream_index.setdefault(execution_id, set()).add(stream)

    def stream_replayed(
        self, conn: Connection, logged: Sequence[StoredEvent], *, finished: bool
    ) -> None:
        """Emit the logged events, then the held live ones; a ``finished`` run's stream then
        closes even when its terminal message was before the client's cursor."""
        stream = self.streams.get(conn)
        if stream is None or not stream.sub.replaying:
            return
        logged_events = self._fitted(stream.execution_id, logged, conn)
        stream.emit(stream.sub.replay(logged_events), backlog=True)
        if finished:
            conn.close(CloseCode.NORMAL, "execution finished")

    # ---- housekeeping ---------------------------------------------------------------------

    def sweep(self, now: float) -> None:
        """Evict old resume entries; forget sessions idle for longer than the buffer age."""
        max_age = self.settings.resume_buffer_age_s
        for session in list(self.sessions.values()):
            session.buffer.evict(now)
            if session.connection is None and now - session.idle_since > max_age:
                self._forget(session)
        self.feeds.sweep(now)

    def close_all(self, code: int, reason: str) -> None:
        """Close every connection after what is queued on it (shutdown)."""
        for conn in self.connections():
            conn.close(code, reason)

    # ---- internals ------------------------------------------------------------------------

    def _session(self, push_ref: str, now: float) -> Session:
        s = self.settings
        buffer = ResumeBuffer(
            max_count=s.resume_buffer_count,
            max_age_s=s.resume_buffer_age_s,
            max_bytes=s.connection_buffer_bytes,
        )
        session = self.sessions[push_ref] = Session(push_ref, buffer, now)
        return session

    def live_session(self, conn: Connection) -> Session | None:
        """The session whose live connection ``conn`` is, if it still is."""
        session = self.sessions.get(conn.push_ref or "")
        return session if session is not None and session.connection is conn else None

    def _unsubscribe(self, session: Session, execution_id: str) -> None:
        session.subscriptions.pop(execution_id, None)
        push_refs = self._subscribers.get(execution_id)
        if push_refs is not None:
            push_refs.discard(session.push_ref)
            if not push_refs:
                del self._subscribers[execution_id]

    def _forget(self, session: Session) -> None:
        self.feeds.forget(session.push_ref)
        for execution_id in list(session.subscriptions):
            self._unsubscribe(session, execution_id)
        if session.connection is not None:
            session.connection.abort(CloseCode.NORMAL, "replaced by a newer connection")
        del self.sessions[session.push_ref]

    def _fitted(
        self, execution_id: str, logged: Sequence[StoredEvent], reader: Connection
    ) -> list[PushEvent]:
        """Logged events as bus events, stamped as within the reach of ``reader``, whom the
        service let read them (its owner, and its token's workflow)."""
        limit = self.settings.max_message_bytes
        owner, workflow_id = reader.owner, reader.scope.workflow_id if reader.scope else None
        events = (
            PushEvent(execution_id, e.seq, e.type, e.payload, owner=owner, workflow_id=workflow_id)
            for e in logged
        )
        return [f for f in (fit(e, limit) for e in events) if f is not None]
