"""SSE transport (SPEC §5.1, §5.4): ``/agents/push`` as a plain GET with
``Accept: text/event-stream``, and ``/agents/executions/{id}/stream``.

Both stream one core connection through sse-starlette: an initial ``:ok`` comment, then
each batch of queued messages as one chunk of ``id: N`` + ``data: <json>`` events, comment
pings every ``ping_interval_s``, headers ``Cache-Control: no-cache`` and
``X-Accel-Buffering: no``. The stream ends when the core closes the connection (execution
finished, replaced, shutdown) or aborts it (slow consumer: the stream just ends), when the
client goes away, and on server shutdown (sse-starlette's uvicorn hook). The connection is
deregistered however it ends. Refusals answer with a JSON error body (403, 401, 400, 404).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import suppress

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.errors import GraphpushError
from app.push.admission import NotAcceptable, accepts_event_stream
from app.push.connection import CloseCode
from app.push.wire import SSE_OK, sse_chunk
from app.runtime import runtime
from app.settings import Settings
from transports.handshake import admit_push, admit_stream, error_response
from transports.pump import Pump, write_timeout_s

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
#: How long ending the response may wait for a socket that does not drain.
END_TIMEOUT_S = 2.0


async def push_endpoint(request: Request) -> Response:
    """``GET /agents/push?pushRef=...`` as an event stream."""
    rt = runtime(request)
    try:
        if not accepts_event_stream(request.headers.get("accept")):
            raise NotAcceptable("use a WebSocket upgrade or Accept: text/event-stream")
        admitted = admit_push(request, rt.settings)
    except GraphpushError as exc:
        return error_response(exc)
    pump = Pump()
    conn = pump.attach(
        rt.hub.connect(admitted.push_ref, admitted.owner, admitted.last_event_id, pump.wake)
    )
    return EventStream(pump, rt.settings, on_close=lambda: rt.hub.disconnect(conn))


async def stream_endpoint(request: Request) -> Response:
    """``GET /agents/executions/{execution_id}/stream``: snapshot, log, live, end."""
    rt = runtime(request)
    execution_id = request.path_params["execution_id"]
    pump = Pump()
    try:
        admitted = admit_stream(request, rt.settings)
        conn = await rt.hub.open_stream(execution_id, admitted.after, admitted.owner, pump.wake)
    except GraphpushError as exc:
        return error_response(exc)
    pump.attach(conn)
    return EventStream(pump, rt.settings, on_close=lambda: rt.hub.disconnect(conn))


class EventStream(Response):
    """The SSE response of one core connection; ``on_close`` runs however it ends."""

    def __init__(self, pump: Pump, settings: Settings, on_close: Callable[[], None]) -> None:
        self.pump = pump
        self.on_close = on_close
        self.inner = EventSourceResponse(
            self._chunks(),
            headers=HEADERS,
            ping=settings.ping_interval_s,
            ping_message_factory=lambda: ServerSentEvent(comment="ping", sep="\n"),
            sep="\n",
            send_timeout=write_timeout_s(settings),
        )
        self.status_code = self.inner.status_code
        self.raw_headers = self.inner.raw_headers
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            with anyio.CancelScope() as cancel_scope:
                self.pump.scope = cancel_scope
                await self.inner(scope, receive, send)
        except SendTimeoutError:
            self.pump.conn.abort(CloseCode.SLOW_CONSUMER, "write timed out")
        finally:
            self.on_close()
        if cancel_scope.cancelled_caught:  # aborted mid-write: end the response if we can
            with anyio.move_on_after(END_TIMEOUT_S), suppress(OSError):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _chunks(self) -> AsyncIterator[bytes]:
        yield SSE_OK + sse_chunk(self.pump.conn.data_to_send())
        while (batch := await self.pump.next_batch()) is not None:
            yield sse_chunk(batch)
