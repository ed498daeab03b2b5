"""The push hub: the core's one stateful object, between the event bus, the execution
service and the transports. It does no socket I/O; its only awaits are service calls.

Lifecycle (the app's lifespan owns it; close it *after* the engine has stopped, so the
final messages of runs cancelled by the shutdown are queued before connections close)::

    hub = PushHub(settings=settings, service=service)
    stack.callback(bus.subscribe(hub.on_event))   # or PushHub(..., bus=bus) + hub.start()
    stack.push_async_callback(hub.aclose)         # runs after the service's shutdown
    ...
    await service.start(); stack.push_async_callback(service.shutdown)

``async with PushHub(..., bus=bus) as hub:`` subscribes and closes too. Transports call
:meth:`connect` / :meth:`open_stream` and :meth:`disconnect` (always, in a ``finally``),
:meth:`receive` for each inbound frame, and write what ``Connection.data_to_send()``
returns whenever the ``wakeup`` callback they gave has been called.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from app.bus.base import EventBus, PushEvent
from app.messages import JsonObject
from app.metrics import prometheus
from app.model.access import Caller, Scope
from app.model.status import FINISHED
from app.push import wire
from app.push.connection import CloseCode, Connection
from app.push.dispatcher import CommandDispatcher, PushService
from app.push.feed import Feeds, WorkflowRuns
from app.push.registry import Registry
from app.push.remote import RemoteEvents
from app.push.runs_feed import RunsFeed
from app.settings import Settings

log = logging.getLogger(__name__)

Wakeup = Callable[[], None]


class PushHub:
    """Routes bus events to connections and answers their commands."""

    def __init__(
        self,
        *,
        settings: Settings,
        service: PushService,
        bus: EventBus | None = None,
        runs: WorkflowRuns | None = None,
        clock: Callable[[], float] = time.monotonic,
        close_timeout_s: float = 5.0,
    ) -> None:
        self.settings = settings
        self.close_timeout_s = close_timeout_s
        self._feeds = Feeds(settings)
        self.registry = Registry(settings, forgotten=self._feeds.forget)
        self._bus = bus
        self._service = service
        #: The bus subscriber (and its ``on_gap``) when the bus is shared by API instances.
        self.shared = RemoteEvents(
            route=self.on_event,
            holds=self.registry.sessions.__contains__,
            followed=self.registry.followed,
            read=service.read_events,
            workflows=self._feeds.followed,
            started_since=runs.started_since if runs is not None else None,
        )
        self._clock = clock
        #: The runs feed (SPEC §11); ``runs`` reads its snapshots.
        self.runs_feed = RunsFeed(self.registry, self._feeds, runs, clock)
        self._commands = CommandDispatcher(
            registry=self.registry,
            service=service,
            runs_feed=self.runs_feed,
            clock=clock,
            max_frame_bytes=settings.max_inbound_frame_bytes,
        )
        self._live: set[Connection] = set()
        self._all_gone = asyncio.Event()
        self._unsubscribe: Callable[[], None] | None = None
        self._closing = False
        self._last_sweep = clock()
        self._sweep_every = max(1.0, min(30.0, settings.resume_buffer_age_s / 2))

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Subscribe :meth:`on_event` to ``bus`` (if one was given; else the owner
        subscribes it). Call before the engine publishes."""
        if self._unsubscribe is None and self._bus is not None:
            self._unsubscribe = self._bus.subscribe(self.on_event)

    async def aclose(self) -> None:
        """Stop taking events and connections, close every connection once what is queued
        on it is sent (WebSocket 1001, SSE end), and wait up to ``close_timeout_s`` for them."""
        self._closing = True
        await self.shared.aclose()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for conn in list(self._live):
            conn.close(CloseCode.GOING_AWAY, "server shutting down")
        if self._live:
            self._all_gone.clear()
            try:
                await asyncio.wait_for(self._all_gone.wait(), self.close_timeout_s)
            except TimeoutError:
                log.warning("%d push connections still open at shutdown", len(self._live))

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ---- events -----------------------------------------------------------------------------

    def on_event(self, event: PushEvent) -> None:
        """The bus subscriber: route one event (synchronously; it never waits for a client)."""
        now = self._clock()
        routed = self.registry.route(event, now)
        if routed is not None:
            self.runs_feed.route(routed, now)
        self._maybe_sweep(now)

    def has(self, push_ref: str) -> bool:
        return self.registry.has(push_ref)

    # ---- connections ------------------------------------------------------------------------

    def connect(
        self,
        push_ref: str,
        owner: str | None,
        last_event_id: int | None,
        wakeup: Wakeup,
        *,
        scope: Scope | None = None,
    ) -> Connection:
        """A new live connection of ``push_ref`` (closing any older one), with what it missed
        after ``last_event_id`` already queued; ``scope``: a scoped token's, which limits
        what it receives. Pair with :meth:`disconnect`."""
        conn = self._new_connection(push_ref, owner, wakeup, scope)
        if not self._closing:
            now = self._clock()
            self.registry.register(conn, last_event_id, now)
            self._maybe_sweep(now)
        return conn

    async def open_stream(
        self,
        execution_id: str,
        after: int,
        owner: str | None,
        wakeup: Wakeup,
        *,
        scope: Scope | None = None,
    ) -> Connection:
        """A stream of one execution: its snapshot, the log after ``after``, then live events
        until ``executionFinished``. Raises ``NotFound`` (``Forbidden`` outside ``scope``);
        pair with :meth:`disconnect`."""
        conn = self._new_connection(None, owner, wakeup, scope)
        self.registry.open_stream(conn, execution_id, after)  # before reading: no gap
        try:
            await self._commands.authorize(conn, execution_id, "read")
            snapshot = await self._service.snapshot(execution_id, owner)
            logged = await self._service.read_events(execution_id, after, owner)
        except BaseException:
            self.disconnect(conn)
            raise
        conn.deliver(wire.snapshot(snapshot), backlog=True)
        finished = snapshot.status in FINISHED
        self.registry.stream_replayed(conn, logged, finished=finished)
        return conn

    async def open_run(
        self, workflow_id: str, input: JsonObject, owner: str | None, wakeup: Wakeup
    ) -> Connection:
        """Start a run of ``workflow_id`` and stream it from its start (:meth:`open_stream`;
        AG-UI). Raises ``NotFound``; pair with :meth:`disconnect`."""
        execution_id = await self.runs_feed.start_run(workflow_id, input, owner)
        return await self.open_stream(execution_id, 0, owner, wakeup)

    async def open_feed(
        self, workflow_id: str, limit: int, last_id: int | None, caller: Caller, wakeup: Wakeup
    ) -> Connection:
        """A runs feed stream (:meth:`RunsFeed.open_stream`). Raises ``NotFound``
        (``Forbidden`` outside a token's scope); pair with :meth:`disconnect`."""
        caller.require_workflow(workflow_id)
        conn = self._new_connection(None, caller.owner, wakeup, caller.scope)
        try:
            await self.runs_feed.open_stream(conn, workflow_id, limit, last_id)
        except BaseException:
            self.disconnect(conn)
            raise
        return conn

    def disconnect(self, conn: Connection) -> None:
        """Forget ``conn``; idempotent, and harmless to a newer connection of its pushRef."""
        now = self._clock()
        self.registry.deregister(conn, now)
        self._feeds.drop(conn, now)
        self._live.discard(conn)
        if not self._live:
            self._all_gone.set()

    @property
    def connection_count(self) -> int:
        return len(self._live)

    def stats(self) -> dict[str, int]:
        """Gauges for ``/metrics``."""
        return {
            "push_connections": len(self._live),
            "push_sessions": len(self.registry.sessions),
            "push_execution_streams": len(self.registry.streams),
            "push_feed_streams": len(self._feeds.streams),
        }

    def metrics_text(self) -> str:
        """:meth:`stats` in the Prometheus text format (``graphpush_`` prefix)."""
        return prometheus(self.stats())

    # ---- inbound commands (SPEC §5.1) -------------------------------------------------------

    async def receive(self, conn: Connection, frame: bytes | str) -> None:
        """Handle one inbound frame (:meth:`CommandDispatcher.receive
        <app.push.dispatcher.CommandDispatcher.receive>`)."""
        await self._commands.receive(conn, frame)

    # ---- internals --------------------------------------------------------------------------

    def _new_connection(
        self, push_ref: str | None, owner: str | None, wakeup: Wakeup, scope: Scope | None
    ) -> Connection:
        limit = self.settings.connection_buffer_bytes
        conn = Connection(push_ref=push_ref, owner=owner, limit=limit, wakeup=wakeup, scope=scope)
        self._live.add(conn)
        if self._closing:
            conn.close(CloseCode.GOING_AWAY, "server shutting down")
        return conn

    def _maybe_sweep(self, now: float) -> None:
        if now - self._last_sweep >= self._sweep_every:
            self._last_sweep = now
            self.registry.sweep(now)
            self._feeds.sweep(now)
