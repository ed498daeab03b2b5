"""Load clients for :mod:`bench.e2e`, run in their own process.

The clients share 2 cores with the servers they measure, so each is a bare
``asyncio.Protocol`` on uvloop: a hand-written HTTP/1.1 keep-alive connection that also
speaks just enough WebSocket (after a 101) and SSE (a chunked body read as it arrives).

One client = one push connection and one HTTP connection. It runs back to back: note the
time, send the run's POST, wait for the first message of the run and for its end, repeat.
Times are ``time.monotonic()``. The process obeys ``("round", spec)`` and ``("quit",)``
from the driver on a pipe (:func:`main`) and answers each with one reply.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import msgspec
import uvloop

from bench.push_clients import BINARY, CLOSE, PING, PONG, TEXT, take_frames

#: What one run of a client measured: POST sent, first message of the run, run ended.
Run = tuple[float, float, float]


class Reply:
    """One HTTP response as it arrives; ``on_data(now)`` sees each piece of the body."""

    def __init__(self, on_data: Callable[[float], None] | None = None) -> None:
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.body = bytearray()
        self.on_data = on_data
        self.left = 0  # body bytes (or, when chunked, chunk bytes) still to come
        self.chunked = False
        self.ended = 0.0
        self.done: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()


class Conn(asyncio.Protocol):
    """A keep-alive HTTP/1.1 connection; replies come in request order. A 101 turns it into
    a WebSocket whose text and binary frames go to ``on_frame(payload, now)``."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.buf = bytearray()
        self.replies: deque[Reply] = deque()
        self.on_frame: Callable[[bytes, float], None] | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        error = ConnectionError(f"connection lost ({exc})")
        for reply in self.replies:
            if not reply.done.done():
                reply.done.set_exception(error)
                reply.done.exception()  # an endless SSE body's reply is never awaited
        if not self.lost.done():
            self.lost.set_result(None)

    def request(self, data: bytes, reply: Reply) -> asyncio.Future[Reply]:
        self.replies.append(reply)
        self.transport.write(data)
        return reply.done

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.buf += data
        while self.on_frame is None and self.replies and self._response(now):
            pass
        if self.on_frame is not None:
            self._frames(now)

    def _response(self, now: float) -> bool:
        """Advance the first reply; True when it completed (the next may follow)."""
        buf, reply = self.buf, self.replies[0]
        if not reply.status:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return False
            lines = bytes(buf[:end]).split(b"\r\n")
            del buf[: end + 4]
            reply.status = int(lines[0].split()[1])
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                reply.headers[name.strip().lower()] = value.strip()
            reply.chunked = reply.headers.get(b"transfer-encoding") == b"chunked"
            reply.left = -1 if reply.chunked else int(reply.headers.get(b"content-length", 0))
            if reply.status == 101:
                self.on_frame = lambda payload, now: None
                return self._end(reply, now)
        if not (self._chunks(reply) if reply.chunked else self._plain(reply)):
            if reply.on_data is not None:
                reply.on_data(now)
            return False
        if reply.on_data is not None:
            reply.on_data(now)
        return self._end(reply, now)

    def _plain(self, reply: Reply) -> bool:
        take = min(reply.left, len(self.buf))
        reply.body += self.buf[:take]
        del self.buf[:take]
        reply.left -= take
        return reply.left == 0

    def _chunks(self, reply: Reply) -> bool:
        """De-chunk what is buffered; ``left`` is -1 before a size line, -2 before the CRLF
        that ends a chunk's data, -3 before the CRLF after the last chunk."""
        buf = self.buf
        while buf:
            if reply.left > 0:
                take = min(reply.left, len(buf))
                reply.body += buf[:take]
                del buf[:take]
                reply.left -= take
                if reply.left == 0:
                    reply.left = -2
                continue
            end = buf.find(b"\r\n")
            if end < 0:
                return False
            line = bytes(buf[:end])
            del buf[: end + 2]
            if reply.left == -3:
                return True
            if reply.left == -1:
                size = int(line.split(b";")[0], 16)
                reply.left = size if size else -3
            else:
                reply.left = -1
        return False

    def _end(self, reply: Reply, now: float) -> bool:
        self.replies.popleft()
        reply.ended = now
        reply.done.set_result(reply)
        return True

    def _frames(self, now: float) -> None:
        for opcode, payload in take_frames(self.buf):
            if opcode in (TEXT, BINARY) and self.on_frame is not None:
                self.on_frame(payload, now)
            elif opcode == PING:
                self.transport.write(PONG)
            elif opcode == CLOSE:
                self.transport.close()


def http_request(method: str, host: str, path: str, body: bytes = b"", **headers: str) -> bytes:
    """An HTTP/1.1 request; ``headers`` use ``_`` for ``-`` in their names."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    if method != "GET":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def ws_upgrade(host: str, path: str, **headers: str) -> bytes:
    return http_request(
        "GET",
        host,
        path,
        Upgrade="websocket",
        Connection="Upgrade",
        Sec_WebSocket_Key="dGhlIHNhbXBsZSBub25jZQ==",
        Sec_WebSocket_Version="13",
        **headers,
    )


async def connect(host: str) -> Conn:
    address, port = host.rsplit(":", 1)
    _, conn = await asyncio.get_running_loop().create_connection(Conn, address, int(port))
    return conn


class PushWatch:
    """The current run's first message and its ``executionFinished`` on a push connection
    (WebSocket frames, or an SSE stream's body); call :meth:`reset` before each run."""

    def __init__(self) -> None:
        self.first = 0.0
        self.finished = 0.0
        self.text = bytearray()  # SSE: the stream's text since the reset
        self.done: asyncio.Event = asyncio.Event()

    def reset(self) -> None:
        self.first = self.finished = 0.0
        self.text.clear()
        self.done.clear()

    def frame(self, payload: bytes, now: float) -> None:
        if not self.first:
            self.first = now
        if b'"executionFinished"' in payload:
            self.text[:] = payload
            self.finished = now
            self.done.set()

    def sse(self, reply: Reply, now: float) -> None:
        text = self.text
        text += reply.body
        reply.body.clear()
        if not self.first and b"data:" in text:
            self.first = now
        at = text.find(b'"executionFinished"')
        if at >= 0 and not self.finished and text.find(b"\n\n", at) >= 0:
            self.finished = now
            self.done.set()


class PushClient:
    """A push connection and a keep-alive HTTP connection that POSTs ``run_request``; a run
    ends with the ``executionFinished`` of the execution id its answer names."""

    accepted = 202
    run_request = b""
    watch: PushWatch
    http: Conn
    conns: list[Conn]

    def execution_id(self, answer: Any) -> str:
        raise NotImplementedError

    async def run(self) -> Run:
        self.watch.reset()
        started = time.monotonic()
        reply = await self.http.request(self.run_request, Reply())
        if reply.status != self.accepted:
            raise RuntimeError(f"POST run answered {reply.status}: {bytes(reply.body[:300])!r}")
        execution_id = self.execution_id(msgspec.json.decode(reply.body))
        await self.watch.done.wait()
        if f'"executionId":"{execution_id}"'.encode() not in self.watch.text:
            raise RuntimeError(f"executionFinished of another run: {bytes(self.watch.text)!r}")
        return started, self.watch.first, self.watch.finished

    def close(self) -> None:
        for conn in self.conns:
            conn.transport.close()


class GraphpushClient(PushClient):
    """``/agents/push`` over WebSocket or SSE, and ``POST /agents/workflows/{id}/run``."""

    def __init__(self, spec: dict[str, Any], index: int) -> None:
        self.host, self.transport = spec["host"], spec["transport"]
        self.push_ref = f"e2e{os.getpid()}x{index}x{time.monotonic_ns() % 10**9}"
        self.run_request = http_request(
            "POST",
            self.host,
            f"/agents/workflows/{spec['workflow_id']}/run",
            msgspec.json.encode({"push_ref": self.push_ref}),
        )
        self.watch = PushWatch()
        self.conns = []

    def execution_id(self, answer: Any) -> str:
        return str(answer["execution_id"])

    async def open(self) -> None:
        push, self.http = await connect(self.host), await connect(self.host)
        self.conns = [push, self.http]
        path = f"/agents/push?pushRef={self.push_ref}"
        if self.transport == "ws":
            reply = await push.request(ws_upgrade(self.host, path), Reply())
            push.on_frame = self.watch.frame
        else:
            opened = asyncio.Event()  # set at the head and the ``:ok`` comment

            def on_data(now: float) -> None:
                opened.set()
                self.watch.sse(reply, now)

            reply = Reply(on_data)
            push.request(http_request("GET", self.host, path, Accept="text/event-stream"), reply)
            waiter = asyncio.ensure_future(opened.wait())
            await asyncio.wait([waiter, reply.done], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        if reply.status not in (101, 200):
            raise ConnectionError(f"push connection answered {reply.status}")


class N8nClient(PushClient):
    """n8n's push WebSocket (cookie and Origin) and ``POST /rest/workflows/<id>/run``."""

    accepted = 200

    def __init__(self, spec: dict[str, Any], index: int) -> None:
        self.host, self.cookie = spec["host"], f"n8n-auth={spec['cookie']}"
        self.push_ref = f"{os.getpid() % 10**5:05d}{index:05d}"[-10:]
        body = msgspec.json.encode({"triggerToStartFrom": {"name": spec["trigger"]}})
        self.run_request = http_request(
            "POST",
            self.host,
            f"/rest/workflows/{spec['workflow_id']}/run",
            body,
            Cookie=self.cookie,
            push_ref=self.push_ref,
        )
        self.watch = PushWatch()
        self.conns = []

    def execution_id(self, answer: Any) -> str:
        return str(answer["data"]["executionId"])

    async def open(self) -> None:
        push, self.http = await connect(self.host), await connect(self.host)
        self.conns = [push, self.http]
        path = f"/rest/push?pushRef={self.push_ref}"
        upgrade = ws_upgrade(self.host, path, Cookie=self.cookie, Origin=f"http://{self.host}")
        reply = await push.request(upgrade, Reply())
        if reply.status != 101:
            raise ConnectionError(f"n8n push answered {reply.status}: {bytes(reply.body)!r}")
        push.on_frame = self.watch.frame


class LangGraphClient:
    """``langgraph dev``: ``POST /threads``, then ``POST /threads/<id>/runs/stream`` (SSE);
    the first event and the end of the stream."""

    def __init__(self, spec: dict[str, Any], index: int) -> None:
        self.host = spec["host"]
        self.body = msgspec.json.encode(
            {"assistant_id": spec["assistant_id"], "input": {}, "stream_mode": ["updates"]}
        )
        self.conns: list[Conn] = []

    async def open(self) -> None:
        self.http = await connect(self.host)
        self.conns = [self.http]

    async def run(self) -> Run:
        create = http_request("POST", self.host, "/threads", b"{}")
        thread = await self.http.request(create, Reply())
        if thread.status != 200:
            raise RuntimeError(f"POST /threads answered {thread.status}")
        path = f"/threads/{msgspec.json.decode(thread.body)['thread_id']}/runs/stream"
        first = 0.0

        def on_data(now: float) -> None:
            nonlocal first
            if not first and b"data:" in stream.body:
                first = now

        stream = Reply(on_data)
        started = time.monotonic()
        await self.http.request(http_request("POST", self.host, path, self.body), stream)
        if stream.status != 200 or b"event: error" in stream.body:
            raise RuntimeError(f"runs/stream answered {stream.status}: {bytes(stream.body)!r}")
        return started, first, stream.ended

    def close(self) -> None:
        for conn in self.conns:
            conn.transport.close()


CLIENTS = {"graphpush": GraphpushClient, "n8n": N8nClient, "langgraph": LangGraphClient}
Client = GraphpushClient | N8nClient | LangGraphClient


async def one_round(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec["clients"]`` clients run back to back until each has done ``max_runs`` or
    ``duration_s`` has passed (a run under way then finishes, within ``run_timeout_s``)."""
    clients: list[Client] = [CLIENTS[spec["kind"]](spec, i) for i in range(spec["clients"])]
    runs: list[Run] = []
    errors: list[str] = []
    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(c.open() for c in clients))
        deadline = time.monotonic() + spec["duration_s"]

        async def loop(client: Client) -> None:
            for _ in range(spec["max_runs"]):
                try:
                    async with asyncio.timeout(spec["run_timeout_s"]):
                        runs.append(await client.run())
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:500])
                    return
                if time.monotonic() >= deadline:
                    return

        await asyncio.gather(*(loop(c) for c in clients))
    finally:
        for client in clients:
            client.close()
        await asyncio.sleep(0.05)
    return {"runs": runs, "errors": errors}


async def serve(pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    while True:
        command, *args = await loop.run_in_executor(None, pipe.recv)
        if command == "quit":
            pipe.send(("ok", None))
            return
        try:
            pipe.send(("ok", await one_round(*args)))
        except Exception as exc:
            pipe.send(("error", f"{type(exc).__name__}: {exc}"))


def main(pipe: Connection) -> None:
    """The client process's entry point."""
    uvloop.run(serve(pipe))
