"""Test doubles for the push tests: an in-memory execution service that logs and publishes
messages the way the engine does, and a Starlette app wired like the real one."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import uvicorn
from starlette.applications import Starlette

from app import messages as m
from app.bus.base import LocalEventBus, PushEvent
from app.errors import IllegalTransition, NotFound
from app.model.records import StoredEvent
from app.model.status import FINISHED
from app.push.hub import PushHub
from app.settings import Settings
from support.wait import eventually
from transports.http_protocol import SERVER_STOPPING
from transports.pump import Pumps
from transports.routes import push_routes
from transports.state import PushState
from transports.websocket import uvicorn_options


class FakeService:
    """The three ``ExecutionService`` methods the hub uses, over an in-memory log."""

    def __init__(self, bus: LocalEventBus) -> None:
        self.bus = bus
        self.logs: dict[str, list[StoredEvent]] = {}
        self.status: dict[str, str] = {}
        self.owners: dict[str, str | None] = {}
        self.push_refs: dict[str, str | None] = {}
        self.cancelled: list[str] = []

    def create(self, eid: str, *, owner: str | None = None, push_ref: str | None = None) -> None:
        self.logs[eid] = []
        self.status[eid] = "new"
        self.owners[eid] = owner
        self.push_refs[eid] = push_ref

    def emit(self, eid: str, message: m.ExecutionMessage) -> PushEvent:
        """Append to the log, then publish (as the engine does)."""
        payload = m.encode(message)
        kind = message.__struct_config__.tag
        assert isinstance(kind, str)
        seq = len(self.logs[eid]) + 1
        self.logs[eid].append(StoredEvent(seq, kind, payload))
        if kind == "executionStarted":
            self.status[eid] = "running"
        elif kind == "executionWaiting":
            self.status[eid] = "waiting"
        elif kind == "executionFinished":
            assert isinstance(message, m.ExecutionFinished)
            self.status[eid] = message.data.status
        event = PushEvent(eid, seq, kind, payload, self.push_refs[eid], owner=self.owners[eid])
        self.bus.publish_nowait(event)
        return event

    def _check(self, eid: str, owner: str | None) -> None:
        if eid not in self.logs or (owner is not None and self.owners[eid] != owner):
            raise NotFound(f"execution {eid} not found")

    async def snapshot(self, eid: str, owner: str | None) -> m.ExecutionSnapshotData:
        self._check(eid, owner)
        return m.ExecutionSnapshotData(eid, self.status[eid], {"completed_nodes": []})

    async def read_events(self, eid: str, after: int, owner: str | None) -> list[StoredEvent]:
        self._check(eid, owner)
        return [e for e in self.logs[eid] if e.seq > after]

    async def cancel_execution(self, eid: str, owner: str | None) -> None:
        self._check(eid, owner)
        if self.status[eid] in FINISHED:
            raise IllegalTransition(f"execution is {self.status[eid]}; it cannot become canceled")
        self.cancelled.append(eid)
        self.emit(eid, finished(eid, "canceled"))


# ---- messages ------------------------------------------------------------------------------


def started(eid: str, **extra: Any) -> m.ExecutionStarted:
    return m.ExecutionStarted(
        m.ExecutionStartedData(
            eid, "manual", "2026-11-25T18:37:50.207Z", "wf", "[{}]", "Flow", **extra
        )
    )


def task(**extra: Any) -> m.TaskResultData:
    return m.TaskResultData(1795631870208, 0, [], [], 2, "success", **extra)


def before(eid: str, node: str, number: int) -> m.NodeExecuteBefore:
    started_data = m.TaskStartedData(1795631870208, 0, [], [])
    return m.NodeExecuteBefore(m.NodeExecuteBeforeData(eid, node, number, started_data))


def after(eid: str, node: str, number: int) -> m.NodeExecuteAfter:
    return m.NodeExecuteAfter(
        m.NodeExecuteAfterMessageData(eid, node, number, {"main": [1]}, task())
    )


def after_data(
    eid: str, node: str, items: list[dict[str, Any]], **extra: Any
) -> m.NodeExecuteAfterData:
    data = {"main": [[{"json": item, "pairedItem": {"item": i}} for i, item in enumerate(items)]]}
    counts = {"main": [len(items)]}
    return m.NodeExecuteAfterData(
        m.NodeExecuteAfterDataMessageData(eid, node, counts, task(data=data), **extra)
    )


def waiting(eid: str) -> m.ExecutionWaiting:
    return m.ExecutionWaiting(m.ExecutionWaitingData(eid))


def finished(eid: str, status: str = "success", **extra: Any) -> m.ExecutionFinished:
    return m.ExecutionFinished(m.ExecutionFinishedData(eid, "wf", status, **extra))


def run_messages(eid: str, nodes: int = 3) -> list[m.ExecutionMessage]:
    """A whole successful run: started, the node triples, finished."""
    out: list[m.ExecutionMessage] = [started(eid)]
    for i in range(nodes):
        out += [before(eid, f"N{i}", 2 * i), after(eid, f"N{i}", 2 * i + 1)]
        out.append(after_data(eid, f"N{i}", [{"i": i}]))
    return [*out, finished(eid)]


def decode(frame: bytes | str) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.json.decode(frame)
    return out


# ---- the app -------------------------------------------------------------------------------


class Harness:
    """A Starlette app with the push routes, a LocalEventBus, a FakeService and the hub."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bus = LocalEventBus()
        self.service = FakeService(self.bus)
        self.hub = PushHub(settings=settings, service=self.service, bus=self.bus)
        self.app = Starlette(routes=push_routes(), lifespan=self._lifespan)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[dict[str, Any]]:
        pumps = Pumps(self.settings)
        app.state.push = PushState(self.settings, self.hub, self.service, pumps)
        async with self.hub:
            yield {SERVER_STOPPING: pumps.shut_down}


# ---- a real uvicorn in the test's own event loop -----------------------------------------


@contextlib.asynccontextmanager
async def serving(app: Any, settings: Settings) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn (configured by :func:`uvicorn_options`) on a free loopback
    port in this event loop; yields ``host:port``. Stops the server on exit."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", **uvicorn_options(settings))
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started, within=10)
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        sock.close()


# ---- reading what the transports send --------------------------------------------------


async def ws_until_finished(ws: Any, within: float = 20) -> list[dict[str, Any]]:
    """The messages a WebSocket client receives up to ``executionFinished`` (replies to its
    own commands, ``ack`` and ``pong``, left out)."""
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while not messages or messages[-1]["type"] != "executionFinished":
            message = decode(await ws.recv())
            if message["type"] not in ("ack", "pong"):
                messages.append(message)
    return messages


class SseEvent(msgspec.Struct):
    """One event of an SSE stream, its fields as sent (``comment`` is a ``:`` line)."""

    id: str | None = None
    data: str | None = None
    comment: str | None = None

    def json(self) -> dict[str, Any]:
        assert self.data is not None
        return decode(self.data)


def sse_event(block: str) -> SseEvent:
    """The event of one SSE block (the lines between two blank lines)."""
    event = SseEvent()
    for line in block.split("\n"):
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "":
            event.comment = value
        elif field in ("id", "data"):
            setattr(event, field, value)
    return event


def sse_text(body: str) -> list[SseEvent]:
    """The events of a whole SSE body (a stream that has ended)."""
    return [sse_event(block) for block in body.split("\n\n") if block]


async def sse_events(response: Any) -> AsyncIterator[SseEvent]:
    """Parse an httpx streaming response into SSE events (comments included)."""
    buffer = b""
    async for chunk in response.aiter_raw():
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            yield sse_event(block.decode())
