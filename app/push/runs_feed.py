"""The runs feed's commands and streams (SPEC §11): what reads a snapshot of a workflow's
runs and hands it, with the live events held meanwhile, to :class:`~app.push.feed.Feeds`.

- ``subscribe_workflow`` (WebSocket): the session follows the workflow; ``runsSnapshot``
  then the held events are emitted on the session (with its cursor), then the ``ack``. A
  second ``subscribe_workflow`` of the same workflow sends a new snapshot.
- ``unsubscribe_workflow``: the session stops following it; always acked.
- a feed stream (SSE): resumed from the workflow's feed log when it covers the cursor,
  else a snapshot and live events.

Live events come through :meth:`RunsFeed.route`, after the registry has routed them: a
session that follows the workflow and gets the run's messages no other way (it neither
started the run nor subscribed to it) gets the lifecycle messages on its own.
"""

from __future__ import annotations

from collections.abc import Callable

from app.bus.base import PushEvent
from app.errors import NotFound
from app.messages import JsonObject, SubscribeWorkflow, UnsubscribeWorkflow
from app.model.access import Caller
from app.push import wire
from app.push.commands import answer
from app.push.connection import Connection
from app.push.feed import Feeds, RunsPage, WorkflowRuns
from app.push.registry import Registry


class RunsFeed:
    """``runs`` reads the snapshots and starts runs (None: there are none here; every
    follow answers ``not_found``). Make ``registry`` with ``forgotten=feeds.forget``."""

    def __init__(
        self,
        registry: Registry,
        feeds: Feeds,
        runs: WorkflowRuns | None,
        clock: Callable[[], float],
    ) -> None:
        self._registry = registry
        self._feeds = feeds
        self._runs = runs
        self._clock = clock

    def route(self, event: PushEvent, now: float) -> None:
        """Log ``event`` for the feed streams and send it to the sessions that follow its
        workflow (call after the registry routed it: the pushRefs it reached are left out)."""
        if event.broadcast:
            return
        direct = self._registry.subscribers(event.execution_id)
        for push_ref in [*self._feeds.route(event, now, direct)]:
            self._registry.deliver(push_ref, event, now)

    async def receive(
        self, conn: Connection, command: SubscribeWorkflow | UnsubscribeWorkflow
    ) -> None:
        """Carry out a workflow command of ``conn`` and queue its one reply."""
        workflow_id = command.data.workflowId
        if isinstance(command, SubscribeWorkflow):
            call = self._follow(conn, workflow_id, command.data.limit)
            await answer(conn, "subscribe_workflow", call, workflow_id=workflow_id)
            return
        session = self._registry.live_session(conn)
        if session is not None:
            self._feeds.unfollow(session.push_ref, workflow_id)
        conn.deliver(wire.ack("unsubscribe_workflow", workflow_id=workflow_id))

    async def _follow(self, conn: Connection, workflow_id: str, limit: int) -> None:
        session = self._registry.live_session(conn)
        if session is None:  # replaced meanwhile: nothing to follow on
            return
        Caller(conn.owner, conn.scope).require_workflow(workflow_id)  # Forbidden: not its scope
        self._feeds.follow(session.push_ref, workflow_id, conn.owner, conn.scope)  # no gap
        try:
            page = await self._latest_runs(workflow_id, limit, conn.owner)
        except BaseException:
            self._feeds.unfollow(session.push_ref, workflow_id)
            raise
        events = self._feeds.session_snapshot(session.push_ref, workflow_id, page)
        session.emit(events, self._clock(), backlog=True)

    async def open_stream(
        self, conn: Connection, workflow_id: str, limit: int, last_id: int | None
    ) -> None:
        """Make ``conn`` a feed stream of ``workflow_id``: what it missed after ``last_id``
        when the workflow's feed log still holds it, else a snapshot of the latest ``limit``
        runs; then live events. Raises ``NotFound`` (then disconnect ``conn``)."""
        now = self._clock()
        if last_id is not None and self._feeds.resume_stream(conn, workflow_id, last_id, now):
            return
        self._feeds.open_stream(conn, workflow_id, now)  # before reading: no gap
        page = await self._latest_runs(workflow_id, limit, conn.owner)
        self._feeds.stream_snapshot(conn, page)

    async def start_run(self, workflow_id: str, input: JsonObject, owner: str | None) -> str:
        """Queue a run of ``workflow_id`` (:meth:`WorkflowRuns.start_run`)."""
        return await self._source().start_run(workflow_id, input, owner)

    async def _latest_runs(self, workflow_id: str, limit: int, owner: str | None) -> RunsPage:
        return await self._source().latest_runs(workflow_id, limit, owner)

    def _source(self) -> WorkflowRuns:
        if self._runs is None:
            raise NotFound("this server has no workflow runs")
        return self._runs
