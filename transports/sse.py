"""SSE transport (SPEC §5.1, §5.4, §11): ``/agents/push`` as a plain GET with
``Accept: text/event-stream``, ``/agents/executions/{id}/stream`` and the runs feed
``/agents/workflows/{id}/stream``.

Each streams one core connection: an initial ``:ok`` comment, then everything queued on the
connection as one chunk of ``id: N`` + ``data: <json>`` events per write, comment pings every
``ping_interval_s``, headers ``Cache-Control: no-cache`` and ``X-Accel-Buffering: no``. The
stream ends when the core closes the connection (execution finished, replaced, shutdown) or
aborts it (slow consumer: the stream just ends), when the client goes away, and on server
shutdown (sse-starlette's uvicorn hook sets ``AppStatus.should_exit``). The connection is
deregistered however it ends. Refusals answer with a JSON error body (403, 401, 400, 404).

The response is a lean ASGI one rather than sse-starlette's ``EventSourceResponse``: that
one costs a timeout scope and several awaits per chunk and five tasks per connection, which
capped fan-out and idle memory (bench/README.md); this one has one task besides the
request's (the disconnect listener) and one timer.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from contextlib import suppress
from typing import Final

import anyio
from sse_starlette.sse import AppStatus
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.errors import GraphpushError
from app.push.admission import NotAcceptable, accepts_event_stream
from app.push.connection import CloseCode, Connection
from app.push.wire import SSE_OK, SSE_PING, Outgoing, sse_chunk
from app.runtime import runtime
from app.settings import Settings
from transports.handshake import admit_feed, admit_push, admit_stream, error_response
from transports.pump import Pump, write_timeout_s

HEADERS: Final = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}
MEDIA_TYPE: Final = "text/event-stream"
#: How long ending the response may wait for a socket that does not drain.
END_TIMEOUT_S = 2.0
#: How often open streams look for uvicorn's exit signal.
SHUTDOWN_POLL_S = 0.5


async def push_endpoint(request: Request) -> Response:
    """``GET /agents/push?pushRef=...`` as an event stream."""
    rt = runtime(request)
    try:
        if not accepts_event_stream(request.headers.get("accept")):
            raise NotAcceptable("use a WebSocket upgrade or Accept: text/event-stream")
        admitted = admit_push(request, rt.settings)
    except GraphpushError as exc:
        return error_response(exc)
    if request.method == "HEAD":  # headers only: no connection, so none is replaced
        return Response(headers=HEADERS, media_type=MEDIA_TYPE)
    pump = Pump(write_timeout_s(rt.settings))
    conn = pump.attach(
        rt.hub.connect(admitted.push_ref, admitted.owner, admitted.last_event_id, pump.wake)
    )
    return EventStream(pump, rt.settings, on_close=lambda: rt.hub.disconnect(conn))


async def stream_endpoint(request: Request) -> Response:
    """``GET /agents/executions/{execution_id}/stream``: snapshot, log, live, end."""
    rt = runtime(request)
    execution_id = request.path_params["execution_id"]
    pump = Pump(write_timeout_s(rt.settings))
    try:
        admitted = admit_stream(request, rt.settings)
        if request.method == "HEAD":
            await rt.service.snapshot(execution_id, admitted.owner)  # 404 for an unknown run
            return Response(headers=HEADERS, media_type=MEDIA_TYPE)
        conn = await rt.hub.open_stream(execution_id, admitted.after, admitted.owner, pump.wake)
    except GraphpushError as exc:
        return error_response(exc)
    pump.attach(conn)
    return EventStream(pump, rt.settings, on_close=lambda: rt.hub.disconnect(conn))


async def feed_endpoint(request: Request) -> Response:
    """``GET /agents/workflows/{workflow_id}/stream``: the runs feed (snapshot or what was
    missed, then live lifecycle messages). A HEAD checks the request and answers headers."""
    rt = runtime(request)
    pump = Pump(write_timeout_s(rt.settings))
    try:
        admitted = admit_feed(request, rt.settings)
        conn = await rt.hub.open_feed(
            request.path_params["workflow_id"],
            admitted.limit,
            admitted.last_event_id,
            admitted.owner,
            pump.wake,
        )
    except GraphpushError as exc:
        return error_response(exc)
    if request.method == "HEAD":
        rt.hub.disconnect(conn)
        return Response(headers=HEADERS, media_type=MEDIA_TYPE)
    pump.attach(conn)
    return EventStream(pump, rt.settings, on_close=lambda: rt.hub.disconnect(conn))


class EventStream(Response):
    """The SSE response of one core connection; ``on_close`` runs however it ends.
    ``encode`` lays out each batch (default: one SSE event per message, :func:`sse_chunk`)."""

    media_type = MEDIA_TYPE

    def __init__(
        self,
        pump: Pump,
        settings: Settings,
        on_close: Callable[[], None],
        encode: Callable[[list[Outgoing]], bytes] = sse_chunk,
    ) -> None:
        self.pump = pump
        self.on_close = on_close
        self.encode = encode
        self.ping_interval_s = settings.ping_interval_s
        self.status_code = 200
        self.background = None
        self.init_headers(HEADERS)
        self._ping_due = False
        self._ping_timer: asyncio.TimerHandle | None = None
        self._peer_left = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pump, conn = self.pump, self.pump.conn
        listener = asyncio.get_running_loop().create_task(self._listen(receive))
        watch = _shutdown_watch()
        watch.add(conn)
        self._arm_ping()
        try:
            await pump.run_writer(lambda: self._stream(send))
        except OSError:  # uvicorn's ClientDisconnected: the peer left mid-write
            self._peer_left = True
        finally:
            listener.cancel()
            if self._ping_timer is not None:
                self._ping_timer.cancel()
            pump.stop()
            watch.discard(conn)
            self.on_close()
        if not self._peer_left:  # ended by the core (or aborted mid-write): end the response
            with anyio.move_on_after(END_TIMEOUT_S), suppress(OSError):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _stream(self, send: Send) -> None:
        pump = self.pump
        start = {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
        await pump.write(send, start)
        pending = SSE_OK
        pump.poke()  # the ``:ok`` goes out at once, with whatever is already queued
        while (batch := await pump.next_batch()) is not None:
            chunk = pending + self.encode(batch)
            if self._ping_due:
                self._ping_due = False
                chunk += SSE_PING
            pending = b""
            await pump.write(send, {"type": "http.response.body", "body": chunk, "more_body": True})

    async def _listen(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._peer_left = True
        self.pump.conn.abort(CloseCode.GOING_AWAY, "client went away")

    def _arm_ping(self) -> None:
        if self.ping_interval_s > 0:
            loop = asyncio.get_running_loop()
            self._ping_timer = loop.call_later(self.ping_interval_s, self._ping)

    def _ping(self) -> None:
        self._ping_due = True
        self.pump.poke()
        self._arm_ping()


class _ShutdownWatch:
    """Closes the open streams of one event loop once uvicorn is told to exit.

    uvicorn waits for open responses to finish before it runs the lifespan's shutdown (and
    so the hub's), so endless streams must notice the exit signal themselves. One polling
    task per loop, only while streams are open."""

    def __init__(self) -> None:
        self.conns: set[Connection] = set()
        self.task: asyncio.Task[None] | None = None

    def add(self, conn: Connection) -> None:
        self.conns.add(conn)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._watch())

    def discard(self, conn: Connection) -> None:
        self.conns.discard(conn)

    async def _watch(self) -> None:
        try:
            while self.conns:
                if AppStatus.should_exit:
                    for conn in list(self.conns):
                        conn.close(CloseCode.GOING_AWAY, "server shutting down")
                await asyncio.sleep(SHUTDOWN_POLL_S)
        finally:
            self.task = None


_WATCHES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _ShutdownWatch] = (
    weakref.WeakKeyDictionary()
)


def _shutdown_watch() -> _ShutdownWatch:
    loop = asyncio.get_running_loop()
    watch = _WATCHES.get(loop)
    if watch is None:
        watch = _WATCHES[loop] = _ShutdownWatch()
    return watch
