"""uvicorn's HTTP protocol with what endless event streams need from the server.

- **Shutdown.** uvicorn waits for open responses to end before it runs the lifespan's
  shutdown, and an event stream never ends on its own. So when a graceful shutdown starts
  and uvicorn asks each connection to finish (:meth:`shutdown`), this protocol first calls
  the callback the app's lifespan left in its state under :data:`SERVER_STOPPING` (the
  lifespan yields ``{SERVER_STOPPING: pumps.shut_down}``).
- **Ending a response without waiting.** ``scope["extensions"][END_NOW]["end_now"]()``
  ends the response now: the last chunk is written behind what the transport already
  holds, without waiting for it to drain, the connection is closed, and it is aborted if
  the peer has not taken it within :data:`END_GRACE_S` (a peer that stopped reading).
- **Writing without a task switch.** ``...[END_NOW]["write_now"](pieces)`` writes one body
  chunk, given as a sequence of byte strings (written with one ``writelines``, not joined
  first), of a started response at once if the transport takes writes (returns 1) or not
  at all (returns 0); ``await ...["drain"](message)`` (any message) waits until it takes
  writes again. An event stream's backlog goes out in the same call that took it, instead
  of one awaited ``http.response.body`` per chunk (bench/README.md). Both raise uvicorn's
  ``ClientDisconnected`` once the peer is gone or the response is over.

Selected by ``http=`` in :func:`transports.websocket.uvicorn_options`. Under another
server, streams end when the lifespan's shutdown closes the hub, and a cut stream ends by
an ordinary last ``http.response.body``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Final

from starlette.types import Message
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.utils import ClientDisconnected

SERVER_STOPPING: Final = "graphpush.server_stopping"
END_NOW: Final = "graphpush.http.end_now"
#: How long a peer has to take the end of a cut response before the connection is aborted.
END_GRACE_S: Final = 5.0


class StoppingHttpProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that calls the app's :data:`SERVER_STOPPING` callback and
    offers the :data:`END_NOW` extension."""

    def shutdown(self) -> None:
        stopping: Callable[[], None] | None = self.app_state.get(SERVER_STOPPING)
        if stopping is not None:
            stopping()
        super().shutdown()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:  # a request, not an upgrade
            extension: dict[object, object] = {
                "end_now": partial(self._end_now, cycle),
                "write_now": partial(self._write_now, cycle),
                "drain": partial(self._drain, cycle),
            }
            self.scope.setdefault("extensions", {})[END_NOW] = extension

    def _write_now(self, cycle: RequestResponseCycle, pieces: Sequence[bytes]) -> int:
        if cycle.disconnected or cycle.response_complete or not cycle.response_started:
            raise ClientDisconnected()
        if self.flow.write_paused:
            return 0
        if cycle.chunked_encoding:
            size = sum(map(len, pieces))
            self.transport.writelines([b"%x\r\n" % size, *pieces, b"\r\n"])
        else:
            self.transport.writelines(pieces)
        return 1

    async def _drain(self, cycle: RequestResponseCycle, message: Message) -> None:
        if self.flow.write_paused and not cycle.disconnected:
            await self.flow.drain()  # set again by resume_writing or connection_lost
        if cycle.disconnected:
            raise ClientDisconnected()

    def _end_now(self, cycle: RequestResponseCycle) -> None:
        if cycle.response_complete or self.transport.is_closing():
            return
        if cycle.response_started and cycle.chunked_encoding:
            self.transport.write(b"0\r\n\r\n")
        cycle.response_complete = True
        cycle.keep_alive = False
        self.transport.close()  # once what it holds is sent...
        self.loop.call_later(END_GRACE_S, self.transport.abort)  # ...or not
