"""WebSocket transport of ``/agents/push`` (SPEC §5.1): moves frames between a socket and
the push core, nothing more.

- ``nodeExecuteAfterData`` goes as a binary frame, everything else as text; each message
  carries its pushRef cursor as ``"meta":{"id":N}``.
- Reader and writer run in one task group; the first to finish cancels the other, and the
  connection is deregistered however it ends.
- Heartbeat: protocol-level pings by uvicorn every ``ping_interval_s``; a peer that has not
  answered by the next ping is terminated (uvicorn closes with 1011). ASGI cannot send
  pings itself, so run uvicorn with :func:`uvicorn_options`.
- Close codes (:class:`~app.push.connection.CloseCode`): 1008 cross-site Origin or bad
  ``pushRef``, 4401 no valid API key, 1009 inbound frame over 64 KiB, 4008 slow consumer,
  1000 replaced by a newer connection of the same pushRef, 1001 server shutting down.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

import anyio
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.errors import GraphpushError
from app.push.admission import close_code_for
from app.push.connection import CloseCode
from app.push.hub import PushHub
from app.push.wire import Outgoing, ws_frame
from app.runtime import runtime
from app.settings import Settings
from transports.handshake import admit_push
from transports.pump import Pump, write_timeout_s

#: How long a close frame may wait for a socket that does not drain.
CLOSE_TIMEOUT_S = 2.0


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config``/``uvicorn.run``: pings, frame limit, and
    per-message deflate declined unless ``ws_per_message_deflate`` is on (SPEC §5.1)."""
    return {
        "ws_per_message_deflate": settings.ws_per_message_deflate,
        "ws_max_size": settings.max_inbound_frame_bytes,
        "ws_ping_interval": settings.ping_interval_s,
        "ws_ping_timeout": settings.ping_interval_s,
    }


async def push_endpoint(ws: WebSocket) -> None:
    """``GET /agents/push?pushRef=...`` with a WebSocket upgrade."""
    rt = runtime(ws)
    try:
        request = admit_push(ws, rt.settings)
    except GraphpushError as exc:
        await ws.accept()
        await _close(ws, close_code_for(exc), exc.message)
        return
    await ws.accept()
    await _WebSocketPeer(ws, rt.hub, rt.settings).serve(
        request.push_ref, request.owner, request.last_event_id
    )


class _WebSocketPeer:
    def __init__(self, ws: WebSocket, hub: PushHub, settings: Settings) -> None:
        self.ws = ws
        self.hub = hub
        self.pump = Pump()
        self.write_timeout_s = write_timeout_s(settings)
        self.peer_left = False

    async def serve(self, push_ref: str, owner: str | None, last_event_id: int | None) -> None:
        conn = self.pump.attach(self.hub.connect(push_ref, owner, last_event_id, self.pump.wake))
        try:
            async with anyio.create_task_group() as tg:
                self.pump.scope = tg.cancel_scope
                tg.start_soon(self._first_wins, tg, self._read)
                tg.start_soon(self._first_wins, tg, self._write)
        finally:
            self.hub.disconnect(conn)
        if not self.peer_left:
            await _close(self.ws, conn.close_code, conn.close_reason)

    @staticmethod
    async def _first_wins(tg: anyio.abc.TaskGroup, run: Callable[[], Awaitable[None]]) -> None:
        await run()
        tg.cancel_scope.cancel()

    async def _read(self) -> None:
        conn = self.pump.conn
        while conn.open:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                self.peer_left = True
                return
            text = message.get("text")
            await self.hub.receive(conn, text if text is not None else message.get("bytes", b""))

    async def _write(self) -> None:
        while (batch := await self.pump.next_batch()) is not None:
            for out in batch:
                try:
                    with anyio.fail_after(self.write_timeout_s):
                        await self.ws.send(_message(out))
                except WebSocketDisconnect:
                    self.peer_left = True
                    return
                except TimeoutError:
                    self.pump.conn.abort(CloseCode.SLOW_CONSUMER, "write timed out")
                    return


def _message(out: Outgoing) -> dict[str, Any]:
    frame = ws_frame(out)
    if out.binary:
        return {"type": "websocket.send", "bytes": frame}
    return {"type": "websocket.send", "text": frame.decode()}


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    """Send a close frame unless the socket is gone or does not drain in time."""
    with anyio.move_on_after(CLOSE_TIMEOUT_S), suppress(WebSocketDisconnect, RuntimeError, OSError):
        await ws.close(code, reason.encode()[:123].decode(errors="ignore"))
