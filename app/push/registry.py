"""Who receives which message: pushRef sessions, their subscriptions, execution streams
(:mod:`app.push.session`).

Every message passes the size rule (:func:`app.push.size.fit`) once, on its way in, so all
receivers share the same bytes. Events of an execution reach a session when the run was
started with its pushRef, or when it subscribed; broadcasts reach every session. With API
keys on, a connection only sees events of its own owner (an execution has one owner).

Fan-out is by cursor (:mod:`app.push.tail`): a message is appended once to its execution's
tail, which the live connections following it read. Receivers that cannot follow live (a
session without a connection, a subscription or stream still replaying the log) get each
message on its own. :meth:`Registry.sweep` forgets sessions idle for the buffer's age.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from app.bus.base import PushEvent
from app.model.records import StoredEvent
from app.push.buffers import ResumeBuffer
from app.push.connection import CloseCode, Connection
from app.push.index import Index
from app.push.session import ExecutionStream, Session, taken_over, visible
from app.push.size import fit, fit_logged
from app.push.subscription import Subscription
from app.push.tail import Tail, TailKey, Tails
from app.settings import Settings


class Registry:
    """All sessions and execution streams of one process. Times are monotonic seconds."""

    def __init__(
        self, settings: Settings, *, forgotten: Callable[[str], None] = lambda push_ref: None
    ) -> None:
        self.settings = settings
        self._forgotten = forgotten  # called with a pushRef whose session goes
        self.sessions: dict[str, Session] = {}
        self.streams: dict[Connection, ExecutionStream] = {}
        self._stream_index: Index[str, ExecutionStream] = Index()
        self._subscribers: Index[str, str] = Index()  # execution id -> pushRefs
        self._tails = Tails()
        self._one_by_one: Index[str, str] = Index()  # subscribed pushRefs not on the tail
        self._held: Index[str, ExecutionStream] = Index()  # streams replaying the log

    # ---- connections ----------------------------------------------------------------------

    def register(self, conn: Connection, last_event_id: int | None, now: float) -> None:
        """Make ``conn`` the live connection of its pushRef, closing the previous one; then
        queue what it missed after ``last_event_id`` (None: a fresh start, live only)."""
        assert conn.push_ref is not None
        session = self.sessions.get(conn.push_ref)
        if session is not None and taken_over(session, conn):
            self._forget(session)  # another key's (or token's) pushRef: nothing carries over
            session = None
        session = session or self._session(conn.push_ref, now)
        if session.connection is not None:
            session.connection.abort(CloseCode.NORMAL, "replaced by a newer connection")
            self._off_tails(session)
        session.connection, session.owner, session.scope = conn, conn.owner, conn.scope
        if last_event_id is not None:
            session.resume(conn, last_event_id, now)
        for execution_id, sub in session.subscriptions.items():
            if not sub.replaying:
                self._go_live(session, execution_id, sub)

    def deregister(self, conn: Connection, now: float) -> None:
        """Forget ``conn`` (idempotent); a newer connection of its pushRef stays."""
        session = self.sessions.get(conn.push_ref or "")
        if session is not None and session.connection is conn:
            self._off_tails(session)
            session.connection = None
            session.idle_since = now
        stream = self.streams.pop(conn, None)
        if stream is not None:
            execution_id = stream.execution_id
            self._stream_index.discard(execution_id, stream)
            self._held.discard(execution_id, stream)
            tail = self._tails.get((execution_id, None))
            if tail is not None:
                tail.leave(conn)

    def has(self, push_ref: str) -> bool:
        """Is a connection of ``push_ref`` live?"""
        session = self.sessions.get(push_ref)
        return session is not None and session.connection is not None

    def followed(self) -> set[str]:
        """The executions subscribed to or streamed by a connection here."""
        return self._subscribers.keys() | self._stream_index.keys()

    def subscribers(self, execution_id: str) -> Collection[str]:
        """The pushRefs subscribed to ``execution_id``."""
        return self._subscribers.get(execution_id, ())

    # ---- events ---------------------------------------------------------------------------

    def route(self, event: PushEvent, now: float) -> PushEvent | None:
        """Deliver one event from the bus to everyone who should get it; returns it as
        delivered (after the size rule), None when it was dropped."""
        fitted = fit(event, self.settings.max_message_bytes)
        if fitted is None:
            return None
        if fitted.broadcast:
            self._broadcast(fitted, now)
            return fitted
        execution_id = fitted.execution_id
        started_from = fitted.push_ref
        if started_from is not None and started_from not in self._subscribers.get(execution_id, ()):
            self._started_from(started_from, fitted, now)
        for push_ref in list(self._one_by_one.get(execution_id, ())):
            self.deliver(push_ref, fitted, now)
        for stream in list(self._held.get(execution_id, ())):
            stream.sub.offer(fitted)
        self._append((execution_id, None), fitted, now)
        if started_from is not None:
            self._append((execution_id, started_from), fitted, now)
        return fitted

    def _append(self, key: TailKey, event: PushEvent, now: float) -> None:
        finished = self._tails.append(key, event, now)
        if finished is not None:
            self._finish(key, finished)

    def _started_from(self, push_ref: str, event: PushEvent, now: float) -> None:
        """``event`` of a run started from ``push_ref``, which has not subscribed to it."""
        session = self.sessions.get(push_ref) or self._session(push_ref, now)
        key = (event.execution_id, push_ref)
        if session.tails is not None and key in session.tails:
            return  # its tail takes it, and keeps it for resume once the connection closes
        conn = session.connection
        if conn is None or not conn.open or not visible(event, session.owner, session.scope):
            session.offer(event, now)
        else:
            session.join(self._tails, key, 0)

    def deliver(self, push_ref: str, event: PushEvent, now: float) -> None:
        """Queue ``event`` on the session of ``push_ref``, on its own."""
        session = self.sessions.get(push_ref) or self._session(push_ref, now)
        session.offer(event, now)
        sub = session.subscriptions.get(event.execution_id)
        if sub is not None and sub.done:
            self._unsubscribe(session, event.execution_id)

    def _broadcast(self, event: PushEvent, now: float) -> None:
        for session in list(self.sessions.values()):
            session.offer(event, now)

    def _finish(self, key: TailKey, tail: Tail) -> None:
        """After ``executionFinished``: subscriptions end, streams close, the tail goes."""
        execution_id = key[0]
        for reader in list(tail.lanes):
            if isinstance(reader, Connection):
                reader.close(CloseCode.NORMAL, "execution finished")
                continue
            session = self.sessions.get(str(reader))
            if session is not None and session.tails is not None:
                session.tails.discard(key)
                if key[1] is None and execution_id in session.subscriptions:
                    self._unsubscribe(session, execution_id)
        tail.close()

    # ---- subscriptions --------------------------------------------------------------------

    def subscribe(self, conn: Connection, execution_id: str, after: int) -> None:
        """Start following ``execution_id`` from ``seq > after`` (replay mode until
        :meth:`replayed`: live events are held, so read the log after this call)."""
        session = self.live_session(conn)
        if session is None:
            return
        session.part(self._tails, execution_id)  # a run it started: now it replays instead
        session.subscriptions[execution_id] = Subscription(after)
        self._subscribers.add(execution_id, session.push_ref)
        self._one_by_one.add(execution_id, session.push_ref)

    def replayed(
        self, conn: Connection, execution_id: str, logged: Sequence[StoredEvent], now: float
    ) -> None:
        """Emit the logged events (read after :meth:`subscribe`), then the held live ones."""
        session = self.live_session(conn)
        sub = session.subscriptions.get(execution_id) if session else None
        if session is None or sub is None or not sub.replaying:
            return
        logged_events = fit_logged(execution_id, logged, conn, self.settings.max_message_bytes)
        session.emit(sub.replay(logged_events), now, backlog=True)
        if sub.done:
            self._unsubscribe(session, execution_id)
        else:
            self._go_live(session, execution_id, sub)

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
        self._stream_index.add(execution_id, stream)
        self._held.add(execution_id, stream)

    def stream_replayed(
        self, conn: Connection, logged: Sequence[StoredEvent], *, finished: bool
    ) -> None:
        """Emit the logged events, then the held live ones; a ``finished`` run's stream then
        closes even when its terminal message was before the client's cursor."""
        stream = self.streams.get(conn)
        if stream is None or not stream.sub.replaying:
            return
        execution_id = stream.execution_id
        self._held.discard(execution_id, stream)
        logged_events = fit_logged(execution_id, logged, conn, self.settings.max_message_bytes)
        stream.emit(stream.sub.replay(logged_events), backlog=True)
        if finished:
            conn.close(CloseCode.NORMAL, "execution finished")
        elif conn.open:
            self._tails.get_or_make((execution_id, None)).join(
                conn, conn, None, stream.sub.last_seq
            )

    # ---- housekeeping ---------------------------------------------------------------------

    def sweep(self, now: float) -> None:
        """Evict old resume entries; forget sessions idle for longer than the buffer age,
        and tails nobody follows."""
        max_age = self.settings.resume_buffer_age_s
        for session in list(self.sessions.values()):
            session.buffer.evict(now)
            if session.connection is None and now - session.idle_since > max_age:
                self._forget(session)
        self._tails.sweep()

    # ---- internals ------------------------------------------------------------------------

    def _session(self, push_ref: str, now: float) -> Session:
        session = Session(push_ref, ResumeBuffer.of(self.settings), now)
        return self.sessions.setdefault(push_ref, session)

    def live_session(self, conn: Connection) -> Session | None:
        """The session whose live connection ``conn`` still is."""
        session = self.sessions.get(conn.push_ref or "")
        return session if session is not None and session.connection is conn else None

    def _go_live(self, session: Session, execution_id: str, sub: Subscription) -> None:
        """A subscription that has replayed follows the tail while the connection lives."""
        if session.connection is None or not session.connection.open:
            return
        self._one_by_one.discard(execution_id, session.push_ref)
        session.join(self._tails, (execution_id, None), sub.last_seq)

    def _off_tails(self, session: Session) -> None:
        """The session's connection goes: its subscriptions get messages one by one."""
        for key in session.tails or ():
            tail = self._tails.get(key)
            if tail is None:
                continue
            tail.leave(session.push_ref)
            execution_id, started_from = key
            sub = session.subscriptions.get(execution_id)
            if sub is not None and started_from is None:
                sub.last_seq = max(sub.last_seq, tail.last_seq)
                self._one_by_one.add(execution_id, session.push_ref)
        session.tails = None

    def _unsubscribe(self, session: Session, execution_id: str) -> None:
        session.subscriptions.pop(execution_id, None)
        self._subscribers.discard(execution_id, session.push_ref)
        self._one_by_one.discard(execution_id, session.push_ref)
        session.part(self._tails, execution_id)

    def _forget(self, session: Session) -> None:
        self._forgotten(session.push_ref)
        if session.connection is not None:
            session.connection.abort(CloseCode.NORMAL, "replaced by a newer connection")
            self._off_tails(session)
        for execution_id in list(session.subscriptions):
            self._unsubscribe(session, execution_id)
        del self.sessions[session.push_ref]
