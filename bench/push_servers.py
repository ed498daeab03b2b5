"""The two servers :mod:`bench.push` measures, each run in its own process.

- :func:`graphpush` — the real app (``create_app``, in-memory store) on real uvicorn with
  :func:`transports.websocket.uvicorn_options`. A ``setup`` hook stamps each event with
  ``time.monotonic()`` as the engine publishes it, *before* the push hub routes it, and a
  small ASGI wrapper serves those stamps at ``GET /__bench/stamps/{execution_id}`` (and
  ``POST /__bench/gc``). Nothing else about the app is changed.
- :func:`raw_websockets` — the ceiling: a plain ``websockets`` server that, when its
  ``/control`` connection sends ``go``, broadcasts the same pre-encoded frames to every
  other connection with ``websockets.broadcast`` and answers with the broadcast times.
"""

from __future__ import annotations

import gc
import time
from typing import Any

import msgspec
import uvicorn
import uvloop
from starlette.types import ASGIApp, Receive, Scope, Send
from websockets.asyncio.server import ServerConnection, broadcast, serve

from app.bus.base import PushEvent
from app.cli.process import tune_gc
from app.executions.service import ExecutionService
from app.main import create_app
from app.settings import load_settings
from bench.push_clients import raise_nofile
from transports.websocket import uvicorn_options

Stamps = dict[str, list[tuple[int, float]]]
#: A pre-encoded WebSocket message: its payload and whether it goes as a binary frame.
Frame = tuple[bytes, bool]


class _BenchRoutes:
    """``/__bench/*`` in front of the app; every other request goes to the app as is."""

    def __init__(self, app: ASGIApp, stamps: Stamps) -> None:
        self.app = app
        self.stamps = stamps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/__bench/"):
            await self.app(scope, receive, send)
            return
        if path == "/__bench/gc":
            gc.collect()
            body = b"{}"
        else:
            body = msgspec.json.encode(self.stamps.pop(path.rsplit("/", 1)[1], []))
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _stamp_publishes(stamps: Stamps) -> Any:
    def setup(service: ExecutionService) -> None:
        bus: Any = service.bus
        # Both entry points of LocalEventBus deliver to the subscribers (neither calls the
        # other): wrap the instance's two.
        publish, publish_nowait = bus.publish, bus.publish_nowait

        def stamp(event: PushEvent) -> None:
            stamps.setdefault(event.execution_id, []).append((event.seq, time.monotonic()))

        async def stamped(event: PushEvent) -> None:
            stamp(event)
            await publish(event)

        def stamped_nowait(event: PushEvent) -> None:
            stamp(event)
            publish_nowait(event)

        bus.publish, bus.publish_nowait = stamped, stamped_nowait

    return setup


def graphpush(port: int, serve_gc: bool = True) -> None:
    """Serve graphpush on ``127.0.0.1:port`` until terminated (a process entry point);
    ``serve_gc``: with the garbage collector set as ``graphpush serve`` sets it."""
    raise_nofile()
    settings = load_settings({"load_examples": False, "database": "memory"}, environ={})
    stamps: Stamps = {}
    app = _BenchRoutes(create_app(settings, _stamp_publishes(stamps)), stamps)
    if serve_gc:
        tune_gc()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        backlog=4096,
        **uvicorn_options(settings),
    )
    uvicorn.Server(config).run()


async def _raw(port: int, frames: list[Frame]) -> None:
    clients: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        if ws.request is not None and ws.request.path == "/control":
            async for _ in ws:
                stamps = []
                for data, binary in frames:
                    stamps.append(time.monotonic())
                    broadcast(clients, data, text=not binary)
                await ws.send(msgspec.json.encode(stamps), text=True)
            return
        clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    async with serve(
        handler, "127.0.0.1", port, compression=None, ping_interval=None, backlog=4096
    ) as server:
        await server.serve_forever()


def raw_websockets(port: int, frames: list[Frame]) -> None:
    """Serve the raw broadcast ceiling on ``127.0.0.1:port`` (a process entry point)."""
    raise_nofile()
    uvloop.run(_raw(port, frames))
