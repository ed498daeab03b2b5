"""uvicorn's WebSocket protocol with one ASGI extension: several messages in one write.

Under this protocol (``ws=`` in :func:`transports.websocket.uvicorn_options`) the scope has
``scope["extensions"]["graphpush.websocket.send_frames"] = {"write_now": write_now}``, and
the app may send::

    {"type": "graphpush.websocket.send_frames", "frames": [(payload, binary), ...]}

Each item becomes one WebSocket frame, exactly the frame a ``websocket.send`` of it would
make (binary or text; text payloads are UTF-8 bytes, so nothing is decoded and re-encoded),
and all of them reach the socket in one transport write. On loopback a write costs more
than everything else a message needs (bench/README.md), so a connection's backlog now costs
one system call instead of one per message. ``write_now(frames)`` does the same without
awaiting: it writes and returns True, or, while the transport is paused (its buffer is
full), writes nothing and returns False, and the app sends the message above, which waits.
Both raise uvicorn's ``ClientDisconnected`` once the connection is closing or gone. Without
the extension (another server, Starlette's TestClient) the app sends ``websocket.send``
messages one by one.
"""

from __future__ import annotations

import struct
from typing import Final

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

SEND_FRAMES: Final = "graphpush.websocket.send_frames"

Frames = list[tuple[bytes, bool]]

_SHORT: Final = struct.Struct("!BB")
_MEDIUM: Final = struct.Struct("!BBH")
_LONG: Final = struct.Struct("!BBQ")


def frame_header(payload_length: int, binary: bool) -> bytes:
    """The header of one unfragmented, unmasked server frame (RFC 6455 §5.2)."""
    first = 0x82 if binary else 0x81  # FIN + opcode
    if payload_length < 126:
        return _SHORT.pack(first, payload_length)
    if payload_length < 1 << 16:
        return _MEDIUM.pack(first, 126, payload_length)
    return _LONG.pack(first, 127, payload_length)


class BatchingWebSocketProtocol(WebSocketsSansIOProtocol):
    """:class:`WebSocketsSansIOProtocol` plus the ``send_frames`` extension."""

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if self.response.status_code == 101:  # the scope exists; the app has not started
            self.scope["extensions"][SEND_FRAMES] = {"write_now": self.write_now}

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] != SEND_FRAMES:  # type: ignore[comparison-overlap]
            await super().send(message)
            return
        await self.writable.wait()  # the transport's backpressure, as for websocket.send
        frames: Frames = message["frames"]
        if not self.write_now(frames):  # paused again meanwhile
            await self.send(message)

    def write_now(self, frames: Frames) -> bool:
        """Write ``frames`` at once, or return False while the transport is paused."""
        if self.disconnected or self.close_sent or self.conn.state is not State.OPEN:
            raise ClientDisconnected()
        if not self.writable.is_set():
            return False
        self.transport.write(self._encode(frames))
        return True

    def _encode(self, frames: Frames) -> bytes:
        if self.conn.extensions:  # per-message deflate: websockets compresses each frame
            for payload, binary in frames:
                if binary:
                    self.conn.send_binary(payload)
                else:
                    self.conn.send_text(payload)
            return b"".join(self.conn.data_to_send())
        parts: list[bytes] = []
        for payload, binary in frames:
            parts += (frame_header(len(payload), binary), payload)
        return b"".join(parts)
