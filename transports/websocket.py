"""WebSocket transport of ``/agents/push`` (SPEC §5.1): moves frames between a socket and
the push core, nothing more.

- ``nodeExecuteAfterData`` goes as a binary frame, everything else as text; each message
  carries its pushRef cursor as ``"meta":{"id":N}``. One message per frame; under uvicorn
  configured by :func:`uvicorn_options`, all frames queued for a connection go out in one
  write (:mod:`transports.ws_protocol`), elsewhere one ``websocket.send`` each.
- Reader and writer run in one task group; the first to finish cancels the other, and the
  connection is deregistered however it ends.
- Heartbeat: protocol-level pings by uvicorn every ``ping_interval_s``; a peer that has not
  answered by the next ping is terminated (uvicorn closes with 1011). ASGI cannot send
  pings itself, so run uvicorn with :func:`uvicorn_options`.
- Close codes (:class:`~app.push.connection.CloseCode`): 1008 cross-site Origin, bad
  ``pushRef``, or a scoped token expired, forged or out of scope; 4401 no valid API key,
  1009 inbound frame over 64 KiB, 4008 slow consumer (its queue passed the bound, or one
  write blocked for :func:`~transports.pump.write_timeout_s`), 1000 replaced by a newer
  connection of the same pushRef, 1001 server shutting down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import anyio
from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send

from app.errors import GraphpushError
from app.model.access import Caller
from app.push.admission import close_code_for
from app.push.connection import CloseCode
from app.push.hub import PushHub
from app.push.wire import Outgoing, ws_frame
from app.runtime import runtime
from app.settings import Settings
from transports.handshake import admit_push
from transports.pump import Pump, write_timeout_s
from transports.ws_protocol import SEND_FRAMES, BatchingWebSocketProtocol, Frames

WriteNow = Callable[[Frames], bool]

#: How long a close frame may wait for a socket that does not drain.
CLOSE_TIMEOUT_S = 2.0


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config``/``uvicorn.run``: pings, frame limit,
    per-message deflate declined unless ``ws_per_message_deflate`` is on (SPEC §5.1), and
    the WebSocket protocol that writes a connection's queued frames at once."""
    return {
        "ws": BatchingWebSocketProtocol,
        "ws_per_message_deflate": settings.ws_per_message_deflate,
        "ws_max_size": settings.max_inbound_frame_bytes,
        "ws_ping_interval": settings.ping_interval_s,
        "ws_ping_timeout": settings.ping_interval_s,
    }


class PushEndpoint:
    """``GET /agents/push?pushRef=...`` with a WebSocket upgrade: a plain ASGI app that
    speaks ASGI messages itself. The writer needs the raw ``send`` for the ``send_frames``
    extension (Starlette's ``WebSocket.send`` refuses other message types), and nothing of
    the handshake (Starlette's ``WebSocket``, parsed headers and query) stays in memory for
    the life of the connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handshake = HTTPConnection(scope)
        rt = runtime(handshake)
        if (await receive())["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        try:
            request = admit_push(handshake, rt.settings)
        except GraphpushError as exc:
            await _close(send, close_code_for(exc), exc.message)
            return
        del handshake
        peer = _WebSocketPeer(scope, receive, send, rt.hub, rt.settings)
        await peer.serve(request.push_ref, request.caller, request.last_event_id)


class _WebSocketPeer:
    """One connection: the writer runs in the request's task, the reader in a second one.
    The first to finish stops the other: a reader that sees the peer leave (or fails)
    aborts the connection, which cancels the writer; the writer's end cancels the reader."""

    __slots__ = ("hub", "peer_left", "pump", "receive", "send", "write_now")

    def __init__(
        self, scope: Scope, receive: Receive, send: Send, hub: PushHub, settings: Settings
    ) -> None:
        self.receive = receive
        self.send = send
        extension = scope.get("extensions", {}).get(SEND_FRAMES)
        self.write_now: WriteNow | None = extension["write_now"] if extension else None
        self.hub = hub
        self.pump = Pump(write_timeout_s(settings))
        self.peer_left = False

    async def serve(self, push_ref: str, caller: Caller, last_event_id: int | None) -> None:
        conn = self.pump.attach(
            self.hub.connect(
                push_ref, caller.owner, last_event_id, self.pump.wake, scope=caller.scope
            )
        )
        reader = asyncio.get_running_loop().create_task(self._read())
        try:
            await self.pump.run_writer(self._write)
        finally:
            reader.cancel()
            self.pump.stop()
            self.hub.disconnect(conn)
        with suppress(asyncio.CancelledError):
            await reader  # re-raises what made the reader fail
        if not self.peer_left:
            await _close(self.send, conn.close_code, conn.close_reason)

    async def _read(self) -> None:
        conn = self.pump.conn
        try:
            while conn.open:
                message = await self.receive()
                if message["type"] == "websocket.disconnect":
                    self.peer_left = True
                    conn.abort(CloseCode.GOING_AWAY, "client went away")
                    return
                text = message.get("text")
                frame = text if text is not None else message.get("bytes") or b""
                await self.hub.receive(conn, frame)
        except Exception:
            conn.abort(CloseCode.INTERNAL_ERROR, "internal error")
            raise

    async def _write(self) -> None:
        pump, write_now = self.pump, self.write_now
        try:
            while (batch := await pump.next_batch()) is not None:
                if write_now is None:
                    for out in batch:
                        await pump.write(self.send, _message(out))
                    continue
                frames = [(ws_frame(out), out.binary) for out in batch]
                if not pump.write_now(write_now, frames):  # the socket is full: wait
                    await pump.write(self.send, {"type": SEND_FRAMES, "frames": frames})
        except OSError:  # uvicorn's ClientDisconnected
            self.peer_left = True


def _message(out: Outgoing) -> dict[str, Any]:
    frame = ws_frame(out)
    if out.binary:
        return {"type": "websocket.send", "bytes": frame}
    return {"type": "websocket.send", "text": frame.decode()}


async def _close(send: Send, code: int, reason: str) -> None:
    """Send a close frame unless the socket is gone or does not drain in time."""
    message = {"type": "websocket.close", "code": code, "reason": _truncated(reason)}
    with anyio.move_on_after(CLOSE_TIMEOUT_S), suppress(RuntimeError, OSError):
        await send(message)


def _truncated(reason: str) -> str:
    """At most the 123 bytes a close frame has room for, cut on a character boundary."""
    return reason.encode()[:123].decode(errors="ignore")
