"""SSE transport (SPEC §5.1, §5.4, §11): ``/agents/push`` as a plain GET with
``Accept: text/event-stream``, ``/agents/executions/{id}/stream`` and the runs feed
``/agents/workflows/{id}/stream``.

Each streams one core connection: an initial ``:ok`` comment, then everything queued on the
connection as ``id: N`` + ``data: <json>`` events, in chunks of about
:data:`~transports.pump.CHUNK_BYTES` per write, written by the pacer's pass that took
them while the socket takes writes (:mod:`transports.pacer`,
:mod:`transports.http_protocol`: no task switch per write), else by the stream's task once
the socket drains (a peer that stops reading holds one chunk, not its backlog), comment
pings every ``ping_interval_s``, headers ``Cache-Control: no-cache`` and
``X-Accel-Buffering: no``. The stream ends when the core closes the connection (execution
finished, replaced, shutdown) or aborts it (slow consumer: the stream just ends, at once,
without waiting for the peer to read what it was sent), when the client goes away, and when
the server starts to stop (:meth:`transports.pump.Pumps.shut_down`). The connection is
deregistered however it ends (:meth:`transports.pump.Pump.run`, as for WebSocket).
Refusals answer with a JSON error body (403, 401, 400, 404, 406, 422).

The response is a lean ASGI one rather than sse-starlette's ``EventSourceResponse``: that
one costs a timeout scope and several awaits per chunk and five tasks per connection, which
capped fan-out and idle memory (bench/README.md); this one has one task besides the
request's (the disconnect listener) and one timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import suppress
from itertools import chain
from typing import Final, TypedDict

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.errors import GraphpushError, NotAcceptable
from app.http.errors import error_response
from app.push.admission import accepts_event_stream
from app.push.wire import SSE_OK, SSE_PING, Outgoing, sse_pieces
from app.settings import Settings
from transports.handshake import admit_feed, admit_push, admit_stream
from transports.http_protocol import END_NOW
from transports.pump import CHUNK_BYTES, Pump
from transports.state import push_state


class StreamExtension(TypedDict):
    """The extension of :mod:`transports.http_protocol`."""

    end_now: Callable[[], None]
    write_now: Callable[[Sequence[bytes]], int]
    drain: Send


HEADERS: Final = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}
MEDIA_TYPE: Final = "text/event-stream"
#: How long ending a response that was not cut may wait for a socket that does not drain.
END_TIMEOUT_S = 2.0


async def push_endpoint(request: Request) -> Response:
    """``GET /agents/push?pushRef=...`` as an event stream."""
    rt = push_state(request)
    try:
        if not accepts_event_stream(request.headers.get("accept")):
            raise NotAcceptable("use a WebSocket upgrade or Accept: text/event-stream")
        admitted = admit_push(request, rt.settings)
    except GraphpushError as exc:
        return error_response(exc)
    if request.method == "HEAD":  # headers only: no connection, so none is replaced
        return Response(headers=HEADERS, media_type=MEDIA_TYPE)
    pump = rt.pumps.pump()
    conn = pump.attach(
        rt.hub.connect(
            admitted.push_ref,
            admitted.caller.owner,
            admitted.last_event_id,
            pump.wake,
            scope=admitted.caller.scope,
        )
    )
    return EventStream(pump, rt.settings, on_close=lambda: rt.hub.disconnect(conn))


async def stream_endpoint(request: Request) -> Response:
    """``GET /agents/executions/{execution_id}/stream``: snapshot, log, live, end."""
    rt = push_state(request)
    execution_id = request.path_params["execution_id"]
    pump = rt.pumps.pump()
    try:
        admitted = admit_stream(request, rt.settings)
        caller = admitted.caller
        if request.method == "HEAD":
            await rt.service.authorize(execution_id, caller, "read")
            await rt.service.snapshot(execution_id, caller.owner)  # 404 for an unknown run
            return Response(headers=HEADERS, media_type=MEDIA_TYPE)
        conn = await rt.hub.open_stream(
            execution_id, admitted.after, caller.owner, pump.wake, scope=caller.scope
        )
    except GraphpushError as exc:
        return error_response(exc)
    pump.attach(conn)
    return EventStream(pump, rt.settings, on_close=lambda: rt.hub.disconnect(conn))


#: Lays out a batch as SSE chunks of about ``max_bytes``, after ``head``, each chunk a
#: sequence of pieces written in one go (:func:`~app.push.wire.sse_pieces`).
Encode = Callable[[list[Outgoing], int, bytes], Iterable[Sequence[bytes]]]


async def feed_endpoint(request: Request) -> Response:
    """``GET /agents/workflows/{workflow_id}/stream``: the runs feed (a snapshot or what was
    missed, then live lifecycle messages). A HEAD checks the request and answers headers."""
    rt = push_state(request)
    pump = rt.pumps.pump()
    try:
        admitted = admit_feed(request, rt.settings)
        conn = await rt.hub.open_feed(
            request.path_params["workflow_id"],
            admitted.limit,
            admitted.last_event_id,
            admitted.caller,
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
    ``encode`` lays out each batch (default: one SSE event per message)."""

    media_type = MEDIA_TYPE

    def __init__(
        self,
        pump: Pump,
        settings: Settings,
        on_close: Callable[[], None],
        encode: Encode = sse_pieces,
    ) -> None:
        self.pump = pump
        self.on_close = on_close
        self.encode = encode
        self.ping_interval_s = settings.ping_interval_s
        self.status_code = 200
        self.background = None
        self.init_headers(HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.pump.run(_SsePeer(self, scope, receive, send), self.on_close)


class _SsePeer:
    """One stream's reads (only the client leaving) and writes, run by :meth:`Pump.run`."""

    __slots__ = ("_head", "_ping_timer", "_rest", "direct", "pump", "receive", "response", "send")

    def __init__(self, response: EventStream, scope: Scope, receive: Receive, send: Send) -> None:
        self.response = response
        self.direct: StreamExtension | None = scope.get("extensions", {}).get(END_NOW)
        self.pump = response.pump
        self.receive = receive
        self.send = send
        self._head = b""  # comments that go before the next events (``:ok``, a ping)
        self._rest: Iterator[Sequence[bytes]] | None = None  # chunks a pass could not write
        self._ping_timer: asyncio.TimerHandle | None = None

    async def read(self) -> bool:
        while (await self.receive())["type"] != "http.disconnect":
            pass
        return True

    async def write(self) -> None:
        pump, send = self.pump, self.send
        start = {"type": "http.response.start", "status": 200, "headers": self.response.raw_headers}
        await pump.write(send, start)
        self._head = SSE_OK
        pump.poke()  # the ``:ok`` goes out at once, with whatever is already queued
        self._arm_ping()
        direct = self.flush if self.direct is not None else None
        try:
            while (batch := await pump.next_batch(direct)) is not None:
                chunks, self._rest = self._rest or self._chunks(batch), None
                # each chunk waits for the socket to drain: a stalled peer holds one chunk
                # in the transport, not the whole batch
                for chunk in chunks:
                    await self._write(chunk)
        finally:
            if self._ping_timer is not None:
                self._ping_timer.cancel()

    def flush(self, batch: list[Outgoing]) -> bool:
        """A pass's write (:data:`~transports.pump.Flush`): whole chunks while the socket
        takes them."""
        assert self.direct is not None
        write_now = self.direct["write_now"]
        chunks = self._chunks(batch)
        for chunk in chunks:
            if not write_now(chunk):
                self._rest = chain((chunk,), chunks)
                return False
        return True

    def _chunks(self, batch: list[Outgoing]) -> Iterator[Sequence[bytes]]:
        head, self._head = self._head, b""
        return iter(self.response.encode(batch, CHUNK_BYTES, head))

    async def _write(self, chunk: Sequence[bytes]) -> None:
        """Write ``chunk`` at once if the socket takes it, else once it drains."""
        pump, direct = self.pump, self.direct
        if direct is None:
            body = {"type": "http.response.body", "body": b"".join(chunk), "more_body": True}
            await pump.write(self.send, body)
            return
        while not direct["write_now"](chunk):
            await pump.write(direct["drain"], {})

    async def end(self, code: int, reason: str) -> None:
        """End the response (SSE has no close code: the stream just ends). A stream cut
        off ends at once, without waiting for its peer to read what it was sent."""
        if self.pump.conn.aborted and self.direct is not None:
            self.direct["end_now"]()
            return
        with anyio.move_on_after(END_TIMEOUT_S), suppress(OSError):
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})

    def _arm_ping(self) -> None:
        if self.response.ping_interval_s > 0:
            loop = asyncio.get_running_loop()
            self._ping_timer = loop.call_later(self.response.ping_interval_s, self._ping)

    def _ping(self) -> None:
        self._head += SSE_PING
        self.pump.poke()
        self._arm_ping()
