"""uvicorn's WebSocket protocol with one ASGI extension: writes that never wait.

Under this protocol (``ws=`` in :func:`transports.websocket.uvicorn_options`) the scope has
``scope["extensions"][SEND_FRAMES] = {"write_now": write_now, "close_now": close_now}``:

- ``write_now(outs)`` writes the frames of ``outs`` (:class:`~app.push.wire.Outgoing`, with
  ``meta.id`` spliced in as they are written) for as long as the transport takes writes,
  and returns how many it wrote; the app then sends ``{"type": DRAIN}``, which waits until
  the transport takes writes again, and calls it with the rest. A frame is written whole
  (a ping may come between two frames, never inside one). Small frames are gathered into
  writes of up to :data:`~transports.pump.CHUNK_BYTES`: on loopback a write costs more
  than everything else a message needs (bench/README.md), so a backlog costs a few calls
  instead of one per message; a large payload is handed to the transport as it is, a view
  of the bytes every connection shares. So a connection holds at most the transport's
  buffer (its high-water mark), one chunk and one frame, however slowly its peer reads. A
  :class:`~app.push.wire.Shared` batch (the same messages with the same ids as other
  connections send) smaller than a chunk is laid out once and written whole by each.
- ``close_now(code, reason)`` writes the close frame at once, behind what the transport
  already holds, without waiting for it to drain, and aborts the transport if the peer has
  not answered it within :data:`CLOSE_GRACE_S` (a peer that stopped reading).

Both raise uvicorn's ``ClientDisconnected`` once the connection is gone (``write_now``
also once it is closing). Without the extension (another server, Starlette's TestClient)
the app sends ``websocket.send`` and ``websocket.close`` messages.

An idle connection holds less than under uvicorn's protocol: the inbox of received events
and the "transport takes writes" flag make no deque or future until they hold or wait for
something (an ``asyncio.Queue`` and an ``asyncio.Event`` cost about 4 KiB per connection),
and the handshake's request and response go once the handshake is complete (about 3 KiB).
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from collections.abc import Sequence
from typing import Any, Final, Literal

from uvicorn._types import ASGIReceiveEvent, ASGISendEvent
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

from app.push.wire import Outgoing, Shared, ws_frame, ws_spliced
from transports.pump import CHUNK_BYTES

SEND_FRAMES: Final = "graphpush.websocket.send_frames"
#: The ASGI message that waits until the transport takes writes again.
DRAIN: Final = "graphpush.websocket.drain"
#: How long a peer has to take and answer the close frame before the transport is aborted.
CLOSE_GRACE_S: Final = 5.0

_SHORT: Final = struct.Struct("!BB")
_MEDIUM: Final = struct.Struct("!BBH")
_LONG: Final = struct.Struct("!BBQ")

Piece = bytes | memoryview


def frame_header(payload_length: int, binary: bool) -> bytes:
    """The header of one unfragmented, unmasked server frame (RFC 6455 §5.2)."""
    first = 0x82 if binary else 0x81  # FIN + opcode
    if payload_length < 126:
        return _SHORT.pack(first, payload_length)
    if payload_length < 1 << 16:
        return _MEDIUM.pack(first, 126, payload_length)
    return _LONG.pack(first, 127, payload_length)


def frame_pieces(out: Outgoing) -> tuple[bytes, Piece, bytes]:
    """``out``'s frame without per-message deflate, as header, shared payload (a view) and
    the ``meta.id`` tail."""
    body, tail = ws_spliced(out)
    return frame_header(len(body) + len(tail), out.binary), body, tail


def frames(outs: Sequence[Outgoing]) -> bytes:
    """The frames of ``outs`` back to back, as written without per-message deflate."""
    return b"".join([piece for out in outs for piece in frame_pieces(out)])


class _Inbox(asyncio.Queue[ASGIReceiveEvent]):
    """The protocol's queue of received ASGI events, for its one reader (the app's
    ``receive``): a deque only while events wait, a future only while the reader does."""

    def __init__(self) -> None:  # no deques and no Event, unlike asyncio.Queue
        self._events: deque[ASGIReceiveEvent] | None = None
        self._reader: asyncio.Future[None] | None = None

    def put_nowait(self, item: ASGIReceiveEvent) -> None:
        if self._events is None:
            self._events = deque()
        self._events.append(item)
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    async def get(self) -> ASGIReceiveEvent:
        while not self._events:
            self._reader = asyncio.get_running_loop().create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        item = self._events.popleft()
        if not self._events:
            self._events = None
        return item

    def qsize(self) -> int:
        return len(self._events or ())

    def empty(self) -> bool:
        return not self._events


class _Flag(asyncio.Event):
    """``asyncio.Event`` without a deque until something waits (set when made)."""

    def __init__(self) -> None:
        self._value = True
        self._waiting: list[asyncio.Future[Literal[True]]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        self._value = True
        waiting, self._waiting = self._waiting, None
        for waiter in waiting or ():
            if not waiter.done():
                waiter.set_result(True)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> Literal[True]:
        if self._value:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiting is None:
            self._waiting = []
        self._waiting.append(waiter)
        await waiter
        return True


class BatchingWebSocketProtocol(WebSocketsSansIOProtocol):
    """:class:`WebSocketsSansIOProtocol` plus the ``send_frames`` extension, lighter when
    idle (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()
        self.writable = _Flag()

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if self.response.status_code == 101:  # the scope exists; the app has not started
            extension: dict[object, object] = {
                "write_now": self.write_now,
                "close_now": self.close_now,
            }
            self.scope["extensions"][SEND_FRAMES] = extension

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] != DRAIN:  # type: ignore[comparison-overlap]
            await super().send(message)
            if message["type"] == "websocket.accept" and self.handshake_complete:
                self._forget_handshake()
            return
        await self.writable.wait()  # set again by resume_writing or connection_lost
        if self.disconnected:
            raise ClientDisconnected()

    def _forget_handshake(self) -> None:
        """Nothing reads the handshake's request and response once it is done (the scope has
        its own headers); websockets' parser keeps the request for the connection's life,
        so its headers are emptied."""
        self.request.headers.clear()
        del self.request, self.response

    def write_now(self, outs: Sequence[Outgoing]) -> int:
        """Write frames of ``outs`` while the transport takes writes; how many were written."""
        if self.disconnected or self.close_sent or self.conn.state is not State.OPEN:
            raise ClientDisconnected()
        if isinstance(outs, Shared) and outs.nbytes < CHUNK_BYTES and not self.conn.extensions:
            if not self.writable.is_set():
                return 0
            if outs.ws is None:  # laid out once for every connection that sends it
                outs.ws = frames(outs)
            self.transport.write(outs.ws)
            return len(outs)
        written, pieces, size = 0, list[Piece](), 0
        for out in outs:
            if not self.writable.is_set():  # changes only when a write fills the buffer
                break
            for piece in self._frame(out):
                if len(piece) >= CHUNK_BYTES:  # a large payload: no copy of it here
                    self._write(pieces)
                    pieces, size = [], 0
                    self.transport.write(piece)
                else:
                    pieces.append(piece)
                    size += len(piece)
            written += 1
            if size >= CHUNK_BYTES:
                self._write(pieces)
                pieces, size = [], 0
        self._write(pieces)
        return written

    def close_now(self, code: int, reason: str) -> None:
        """Write the close frame without waiting; abort after :data:`CLOSE_GRACE_S`."""
        if self.close_sent or self.disconnected or self.transport.is_closing():
            return
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:  # the peer's answer to the close frame must be read
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(CLOSE_GRACE_S, self.transport.abort)

    def _frame(self, out: Outgoing) -> Sequence[Piece]:
        if self.conn.extensions:  # per-message deflate: websockets compresses each frame
            if out.binary:
                self.conn.send_binary(ws_frame(out))
            else:
                self.conn.send_text(ws_frame(out))
            return self.conn.data_to_send()
        return frame_pieces(out)

    def _write(self, pieces: list[Piece]) -> None:
        if pieces:
            self.transport.write(b"".join(pieces))
