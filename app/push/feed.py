"""The runs feed (SPEC §11): a live list of one workflow's runs, for list views.

A follower gets a ``runsSnapshot`` (the list DTOs of the workflow's latest runs, newest
first), then the lifecycle messages (``executionStarted``, ``executionWaiting``,
``executionFinished``) of every run of that workflow that it may see, live. Two kinds of
follower:

- a pushRef session (WebSocket ``subscribe_workflow``): the snapshot and the messages ride
  the session like any other message, with its cursor and resume buffer;
- a feed stream (SSE ``GET /agents/workflows/{id}/stream``): its cursor is the workflow's
  feed log, a resume buffer of that workflow's lifecycle messages kept while a stream of
  it is open (and for the buffer's age after, if it holds any). A log's ids start at a
  random base, so a cursor from another process, or from before a restart, is not one of
  this log's: that client gets a new snapshot instead of a wrong replay.

Snapshot, then live, with no gap: the follower is registered first and holds the live
events (:class:`Feed`) while the snapshot is read; then the snapshot is sent, then the held
events the snapshot does not already reflect (each run's item reflects its log up to the
``seq`` in :attr:`RunsPage.seen`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Iterator
from typing import Final, NamedTuple, Protocol

from app.bus.base import PushEvent
from app.messages import JsonObject, RunsSnapshot, RunsSnapshotData, encoder
from app.model.access import Scope
from app.push.buffers import ResumeBuffer
from app.push.connection import Connection
from app.push.session import visible
from app.push.wire import Outgoing
from app.settings import Settings

#: The messages a runs feed carries.
LIFECYCLE: Final = frozenset({"executionStarted", "executionWaiting", "executionFinished"})


class RunsPage(NamedTuple):
    """A workflow's latest runs: their list DTOs, newest first, and per run the last ``seq``
    of its log that its item reflects."""

    items: list[JsonObject]
    seen: dict[str, int]


class RunRef(NamedTuple):
    """A run as the push core needs it to route the messages of its log."""

    execution_id: str
    push_ref: str | None
    owner: str | None


class WorkflowRuns(Protocol):
    """What the push core asks of the engine about a workflow's runs: the runs feed's
    snapshots, and a run to start (AG-UI). Each raises :class:`~app.errors.NotFound` for an
    unknown workflow."""

    async def latest_runs(self, workflow_id: str, limit: int, owner: str | None) -> RunsPage:
        """The latest ``limit`` runs of ``workflow_id`` that ``owner`` may see (None: all)."""
        ...

    async def started_since(self, workflow_id: str, since_ms: int) -> list[RunRef]:
        """The runs of ``workflow_id`` of every owner whose log began at ``since_ms`` (epoch
        ms) or later (they started then, or ended unstarted), newest first."""
        ...

    async def start_run(self, workflow_id: str, input: JsonObject, owner: str | None) -> str:
        """Queue a run of ``workflow_id`` with ``input`` for ``owner``; its execution id.
        Also raises :class:`~app.errors.QueueFull`."""
        ...


def snapshot_message(workflow_id: str, page: RunsPage, limit: int) -> bytes:
    """The ``runsSnapshot`` as JSON of at most ``limit`` bytes: past it, the items lose their
    ``graph_state``, then the oldest items are left out (the size rule, SPEC §5.3)."""

    def encode(items: list[JsonObject]) -> bytes:
        return encoder.encode(RunsSnapshot(RunsSnapshotData(workflow_id, items)))

    items = page.items
    payload = encode(items)
    if len(payload) > limit:
        items = [{k: v for k, v in item.items() if k != "graph_state"} for item in items]
        payload = encode(items)
    while len(payload) > limit and items:
        items = items[:-1]
        payload = encode(items)
    return payload


class Feed:
    """One follower's view of one workflow: unless ``live``, holds live events (with their
    feed-log id, 0 for a session) until :meth:`replay`. ``mark``: the feed log's cursor
    when it began."""

    __slots__ = ("_pending", "mark", "owner", "scope")

    def __init__(
        self, owner: str | None, scope: Scope | None, mark: int = 0, *, live: bool = False
    ) -> None:
        self.owner = owner
        self.scope = scope
        self.mark = mark
        self._pending: list[tuple[PushEvent, int]] | None = None if live else []

    @property
    def replaying(self) -> bool:
        return self._pending is not None

    def offer(self, event: PushEvent, event_id: int = 0) -> bool:
        """Should ``event`` be sent now? Held while the snapshot is read; never when the
        follower may not see it."""
        if not visible(event, self.owner, self.scope):
            return False
        if self._pending is not None:
            self._pending.append((event, event_id))
            return False
        return True

    def replay(self, page: RunsPage) -> list[tuple[PushEvent, int]]:
        """The held events that ``page`` does not reflect, in order; goes live."""
        pending, self._pending = self._pending or [], None
        return [(e, i) for e, i in pending if e.seq > page.seen.get(e.execution_id, 0)]


def _random_base() -> int:
    return random.getrandbits(48) << 8


class _Log:
    """A workflow's feed log (the cursor of its feed streams) and its open streams."""

    __slots__ = ("buffer", "idle_since", "streams")

    def __init__(self, buffer: ResumeBuffer, now: float) -> None:
        self.buffer = buffer
        self.streams: dict[Connection, Feed] = {}
        self.idle_since = now


class Feeds:
    """Who follows which workflow's runs, in one process. Times are monotonic seconds."""

    def __init__(self, settings: Settings, *, id_base: Callable[[], int] = _random_base) -> None:
        self.settings = settings
        self._id_base = id_base
        self._sessions: dict[str, dict[str, Feed]] = {}  # workflow id -> pushRef -> feed
        self._logs: dict[str, _Log] = {}
        self.streams: dict[Connection, str] = {}  # feed stream -> workflow id

    # ---- pushRef sessions -----------------------------------------------------------------

    def follow(
        self, push_ref: str, workflow_id: str, owner: str | None, scope: Scope | None
    ) -> None:
        """``push_ref`` follows ``workflow_id`` (again: a new snapshot), holding live events
        until :meth:`session_snapshot`."""
        self._sessions.setdefault(workflow_id, {})[push_ref] = Feed(owner, scope)

    def session_snapshot(self, push_ref: str, workflow_id: str, page: RunsPage) -> list[PushEvent]:
        """The snapshot then the held events, for ``push_ref`` to emit; [] if it stopped
        following meanwhile."""
        feed = self._sessions.get(workflow_id, {}).get(push_ref)
        if feed is None or not feed.replaying:
            return []
        payload = snapshot_message(workflow_id, page, self.settings.max_message_bytes)
        snapshot = PushEvent("", 0, "runsSnapshot", payload, owner=feed.owner)
        return [snapshot, *(event for event, _ in feed.replay(page))]

    def unfollow(self, push_ref: str, workflow_id: str) -> None:
        followers = self._sessions.get(workflow_id)
        if followers is not None:
            followers.pop(push_ref, None)
            if not followers:
                del self._sessions[workflow_id]

    def followed(self) -> set[str]:
        """The workflows a session or a stream follows here."""
        return self._sessions.keys() | {w for w, log in self._logs.items() if log.streams}

    def forget(self, push_ref: str) -> None:
        """``push_ref`` follows nothing any more (its session is gone)."""
        for workflow_id in [w for w, f in self._sessions.items() if push_ref in f]:
            self.unfollow(push_ref, workflow_id)

    # ---- events ---------------------------------------------------------------------------

    def route(self, event: PushEvent, now: float, direct: Collection[str]) -> Iterator[str]:
        """Log ``event`` and send it to the feed streams of its workflow; yield the pushRefs
        that get it through their feed (``direct``: the ones that get it anyway, besides the
        run's own pushRef)."""
        if event.type not in LIFECYCLE or event.workflow_id is None:
            return
        log = self._logs.get(event.workflow_id)
        if log is not None:
            event_id = log.buffer.append(event, now)
            for conn, feed in log.streams.items():
                if feed.offer(event, event_id):
                    conn.deliver(Outgoing(event.payload, False, event_id))
        for push_ref, feed in list(self._sessions.get(event.workflow_id, {}).items()):
            if push_ref != event.push_ref and push_ref not in direct and feed.offer(event):
                yield push_ref

    # ---- feed streams ---------------------------------------------------------------------

    def resume_stream(self, conn: Connection, workflow_id: str, last_id: int, now: float) -> bool:
        """Follow ``workflow_id`` on ``conn`` from its cursor ``last_id``: what it missed is
        queued and True returned, or False when the log does not cover that gap."""
        log = self._logs.get(workflow_id)
        missed = log.buffer.after(last_id, now) if log is not None else None
        if log is None or missed is None:
            return False
        self._open(conn, workflow_id, log, Feed(conn.owner, conn.scope, last_id, live=True))
        for event_id, event in missed:
            if visible(event, conn.owner, conn.scope):
                conn.deliver(Outgoing(event.payload, False, event_id), backlog=True)
        return True

    def open_stream(self, conn: Connection, workflow_id: str, now: float) -> None:
        """Follow ``workflow_id`` on ``conn``, holding live events until
        :meth:`stream_snapshot` (read the snapshot after this call)."""
        log = self._logs.get(workflow_id)
        if log is None:
            log = self._logs[workflow_id] = _Log(self._buffer(), now)
        self._open(conn, workflow_id, log, Feed(conn.owner, conn.scope, log.buffer.last_id))

    def stream_snapshot(self, conn: Connection, page: RunsPage) -> None:
        """Queue the snapshot (its id: the log's cursor at :meth:`open_stream`), then the held
        events it does not reflect."""
        workflow_id = self.streams.get(conn)
        log = self._logs.get(workflow_id or "")
        feed = log.streams.get(conn) if log is not None else None
        if workflow_id is None or feed is None or not feed.replaying:
            return
        payload = snapshot_message(workflow_id, page, self.settings.max_message_bytes)
        conn.deliver(Outgoing(payload, False, feed.mark), backlog=True)
        for event, event_id in feed.replay(page):
            conn.deliver(Outgoing(event.payload, False, event_id), backlog=True)

    def drop(self, conn: Connection, now: float) -> None:
        """Forget the feed stream ``conn`` (idempotent)."""
        workflow_id = self.streams.pop(conn, "")
        log = self._logs.get(workflow_id)
        if log is None:
            return
        log.streams.pop(conn, None)
        if not log.streams:
            log.idle_since = now
            if not len(log.buffer):  # nothing to resume from: forget it at once
                del self._logs[workflow_id]

    def sweep(self, now: float) -> None:
        """Forget logs no stream has read for longer than the buffer age."""
        max_age = self.settings.resume_buffer_age_s
        for workflow_id, log in list(self._logs.items()):
            log.buffer.evict(now)
            if not log.streams and now - log.idle_since > max_age:
                del self._logs[workflow_id]

    # ---- internals ------------------------------------------------------------------------

    def _open(self, conn: Connection, workflow_id: str, log: _Log, feed: Feed) -> None:
        log.streams[conn] = feed
        self.streams[conn] = workflow_id

    def _buffer(self) -> ResumeBuffer:
        s = self.settings
        buffer = ResumeBuffer(
            max_count=s.resume_buffer_count,
            max_age_s=s.resume_buffer_age_s,
            max_bytes=s.connection_buffer_bytes,
        )
        buffer.next_id = self._id_base() + 1
        return buffer
