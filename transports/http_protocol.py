"""uvicorn's HTTP protocol, telling the app when the server starts to stop.

uvicorn waits for open responses to end before it runs the lifespan's shutdown, and an
event stream never ends on its own. So when a graceful shutdown starts and uvicorn asks
each connection to finish (:meth:`shutdown`), this protocol first calls the callback the
app's lifespan left in its state under :data:`SERVER_STOPPING` (the lifespan yields
``{SERVER_STOPPING: pumps.shut_down}``). Selected by ``http=`` in
:func:`transports.websocket.uvicorn_options`; under another server, streams end when the
lifespan's shutdown closes the hub.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

SERVER_STOPPING: Final = "graphpush.server_stopping"


class StoppingHttpProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that calls the app's :data:`SERVER_STOPPING` callback."""

    def shutdown(self) -> None:
        stopping: Callable[[], None] | None = self.app_state.get(SERVER_STOPPING)
        if stopping is not None:
            stopping()
        super().shutdown()
