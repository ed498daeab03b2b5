"""WebSocket transport of ``/agents/push`` (SPEC §5.1): moves frames between a socket and
the push core, nothing more.

- ``nodeExecuteAfterData`` goes as a binary frame, everything else as text; each message
  carries its pushRef cursor as ``"meta":{"id":N}``. One message per frame; under uvicorn
  configured by :func:`uvicorn_options`, the frames queued for a connection go out in a few
  writes, only while the socket takes them (:mod:`transports.ws_protocol`), elsewhere one
  ``websocket.send`` each.
- Reader and writer run as :meth:`transports.pump.Pump.run` runs them (the first to finish
  cancels the other), and the connection is deregistered however it ends.
- Heartbeat: protocol-level pings by uvicorn every ``ping_interval_s``; a peer that has not
  answered by the next ping is terminated (uvicorn closes with 1011). ASGI cannot send
  pings itself, so run uvicorn with :func:`uvicorn_options`.
- Close codes (:class:`~app.push.connection.CloseCode`): 1008 cross-site Origin, bad
  ``pushRef``, or a scoped token expired, forged or out of scope; 4401 no valid API key,
  1009 inbound frame over 64 KiB, 4008 slow consumer (its queue passed the bound, or one
  write blocked for :func:`~transports.pump.write_timeout_s`), 1000 replaced by a newer
  connection of the same pushRef, 1001 server shutting down.
  The close frame is written at once, behind what the socket already holds, and a peer
  that does not take it is cut off after :data:`~transports.ws_protocol.CLOSE_GRACE_S`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any, TypedDict

import anyio
from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send

from app.errors import GraphpushError
from app.http.errors import close_code
from app.push.hub import PushHub
from app.push.wire import Outgoing, ws_frame
from app.settings import Settings
from transports.handshake import admit_push
from transports.http_protocol import StoppingHttpProtocol
from transports.pump import Pump
from transports.state import push_state
from transports.ws_protocol import DRAIN, SEND_FRAMES, BatchingWebSocketProtocol


class FramesExtension(TypedDict):
    """The ``send_frames`` extension of :mod:`transports.ws_protocol`."""

    write_now: Callable[[Sequence[Outgoing]], int]
    close_now: Callable[[int, str], None]


#: How long a close frame may wait for a socket that does not drain (without the extension).
CLOSE_TIMEOUT_S = 2.0


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config``/``uvicorn.run``: pings, frame limit,
    per-message deflate declined unless ``ws_per_message_deflate`` is on (SPEC §5.1), the
    WebSocket protocol that writes a connection's queued frames in a few writes without
    waiting (:mod:`transports.ws_protocol`), and the HTTP protocol that tells open streams
    when the server stops and ends a cut one at once (:mod:`transports.http_protocol`)."""
    return {
        "http": StoppingHttpProtocol,
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
    the life of the connection.

    The connection is registered before the handshake is accepted: once a client sees the
    upgrade, every message for its pushRef reaches it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handshake = HTTPConnection(scope)
        rt = push_state(handshake)
        pump = rt.pumps.pump()
        if (await receive())["type"] != "websocket.connect":
            return
        try:
            request = admit_push(handshake, rt.settings)
        except GraphpushError as exc:
            await send({"type": "websocket.accept"})  # so that the client sees the code
            await _close(send, close_code(exc), exc.message)
            return
        del handshake
        peer = _WebSocketPeer(scope, receive, send, rt.hub, pump)
        conn = peer.pump.attach(
            rt.hub.connect(
                request.push_ref,
                request.caller.owner,
                request.last_event_id,
                peer.pump.wake,
                scope=request.caller.scope,
            )
        )
        await peer.pump.run(peer, on_close=lambda: rt.hub.disconnect(conn))


class _WebSocketPeer:
    """One connection's reads and writes, run by :meth:`Pump.run`."""

    __slots__ = ("frames", "hub", "pump", "receive", "rest", "send")

    def __init__(
        self, scope: Scope, receive: Receive, send: Send, hub: PushHub, pump: Pump
    ) -> None:
        self.receive = receive
        self.send = send
        self.frames: FramesExtension | None = scope.get("extensions", {}).get(SEND_FRAMES)
        self.hub = hub
        self.pump = pump
        self.rest: list[Outgoing] = []  # what a pass's write left for the socket to drain

    async def read(self) -> bool:
        conn = self.pump.conn
        while conn.open:
            message = await self.receive()
            if message["type"] == "websocket.disconnect":
                return True
            text = message.get("text")
            frame = text if text is not None else message.get("bytes") or b""
            await self.hub.receive(conn, frame)
        return False

    async def write(self) -> None:
        pump, frames = self.pump, self.frames
        await self.send({"type": "websocket.accept"})
        if frames is None:
            while (batch := await pump.next_batch()) is not None:
                for out in batch:
                    await pump.write(self.send, _message(out))
            return
        while await pump.next_batch(self.flush) is not None:
            rest, self.rest = self.rest, []
            while rest:  # the socket was full: wait, then write the rest
                await pump.write(self.send, {"type": DRAIN})
                rest = rest[frames["write_now"](rest) :]

    def flush(self, batch: list[Outgoing]) -> bool:
        """A pass's write (:data:`~transports.pump.Flush`)."""
        assert self.frames is not None
        written = self.frames["write_now"](batch)
        if written == len(batch):
            return True
        self.rest = batch[written:]
        return False

    async def end(self, code: int, reason: str) -> None:
        if self.frames is None:
            await _close(self.send, code, reason)
            return
        with suppress(OSError):  # uvicorn's ClientDisconnected: nothing left to close
            self.frames["close_now"](code, _truncated(reason))


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
