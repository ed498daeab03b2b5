"""Load clients for :mod:`bench.push`, run in their own processes.

The clients must cost far less CPU than the server they measure (all share 2 cores), so
they are bare ``asyncio.Protocol`` objects on uvloop with a hand-written HTTP upgrade and
a minimal frame (WebSocket) or event (SSE) counter, not a client library. Each one keeps
the arrival time (``time.monotonic()``, one clock for every process of the machine) of
each message; the n-th message of a run is the run's ``seq`` n, as every subscriber gets
the whole run in order.

A client process obeys commands from the driver on a pipe (:func:`main`), one at a time,
and answers each with one reply.
"""

from __future__ import annotations

import asyncio
import base64
import os
import resource
import time
from multiprocessing.connection import Connection
from typing import Any

import msgspec
import uvloop

Times = list[float]


def raise_nofile() -> None:
    """Allow as many sockets as the hard limit does (1,000 clients need more than 1,024)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))


def masked_text(payload: bytes) -> bytes:
    """One client→server text frame (clients must mask, RFC 6455 §5.3)."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes((0x81, 0x80 | len(payload))) + mask + body


#: A server ping answered: a pong, masked with a zero mask, empty.
PONG = b"\x8a\x80\x00\x00\x00\x00"
TEXT, BINARY, CLOSE, PING = 1, 2, 8, 9


def take_frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """Remove every whole server→client frame at the start of ``buf``; their opcodes and
    payloads, in order (server frames are unmasked)."""
    frames: list[tuple[int, bytes]] = []
    pos, end = 0, len(buf)
    while end - pos >= 2:
        length, start = buf[pos + 1] & 0x7F, pos + 2
        if length == 126:
            length, start = int.from_bytes(buf[pos + 2 : pos + 4]), pos + 4
        elif length == 127:
            length, start = int.from_bytes(buf[pos + 2 : pos + 10]), pos + 10
        if start + length > end:
            break
        frames.append((buf[pos] & 0x0F, bytes(buf[start : start + length])))
        pos = start + length
    del buf[:pos]
    return frames


class Client(asyncio.Protocol):
    """Common part: the HTTP request, the response head, arrival times, completion."""

    def __init__(self, request: bytes, expect_status: bytes) -> None:
        self.request = request
        self.expect_status = expect_status
        self.transport: Any = None
        self.head: bytes | None = b""  # the response head until it is complete
        self.buf = bytearray()
        self.times: Times = []
        self.target = 0  # messages wanted before ``done`` is set
        self.ready = asyncio.get_running_loop().create_future()
        self.done = asyncio.Event()
        self.closed = False
        self.last = b""  # the final message of a measurement, to check it ended the run

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.done.set()
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before it was ready"))

    def data_received(self, data: bytes) -> None:
        if self.head is None:
            self.received(time.monotonic(), data)
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return
        head, rest, self.head = self.head[:end], self.head[end + 4 :], None
        if not head.startswith(self.expect_status):
            self.ready.set_exception(ConnectionError(head[:200].decode(errors="replace")))
            assert self.transport is not None
            self.transport.close()
            return
        self.on_open()
        if rest:
            self.received(time.monotonic(), rest)

    def on_open(self) -> None:
        pass

    def received(self, now: float, data: bytes) -> None:
        raise NotImplementedError

    def arrived(self, now: float, count: int) -> None:
        self.times.extend([now] * count)
        if self.target and len(self.times) >= self.target:
            self.done.set()

    def expect(self, count: int) -> None:
        """Start a new measurement of ``count`` messages."""
        self.times, self.target = [], count
        self.done.clear()
        if self.closed:
            self.done.set()


class WsClient(Client):
    """A WebSocket client; ``ready`` resolves at the upgrade, ``acked`` at a reply frame."""

    def __init__(self, host: str, path: str) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        super().__init__(request.encode(), b"HTTP/1.1 101")
        self.replies: asyncio.Queue[bytes] | None = None

    def on_open(self) -> None:
        self.ready.set_result(None)

    def send_command(self, command: dict[str, Any]) -> None:
        assert self.transport is not None
        self.replies = asyncio.Queue()
        self.transport.write(masked_text(msgspec.json.encode(command)))

    def received(self, now: float, data: bytes) -> None:
        self.buf += data
        count = 0
        for opcode, payload in take_frames(self.buf):
            if opcode in (TEXT, BINARY):
                if self.replies is not None:  # a command's reply, not a run message
                    self.replies.put_nowait(payload)
                    self.replies = None
                else:
                    count += 1
                    if self.target and len(self.times) + count == self.target:
                        self.last = payload
            elif opcode == PING and self.transport is not None:
                self.transport.write(PONG)
            elif opcode == CLOSE and self.transport is not None:
                self.transport.close()
        if count:
            self.arrived(now, count)


class SseClient(Client):
    """An SSE client over HTTP/1.1 chunked encoding; counts events that carry an ``id:``.

    ``ready`` resolves at the first event (the snapshot, or the ``:ok`` comment)."""

    def __init__(self, host: str, path: str) -> None:
        request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n"
        super().__init__(request.encode(), b"HTTP/1.1 200")
        self.chunk_left = 0  # data bytes of the current chunk still to come
        self.skip = 0  # bytes of the CRLF after a chunk's data still to skip
        self.text = bytearray()  # de-chunked bytes not yet split into events

    def received(self, now: float, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos, end = 0, len(buf)
        while pos < end:
            if self.chunk_left:
                take = min(self.chunk_left, end - pos)
                self.text += buf[pos : pos + take]
                self.chunk_left -= take
                pos += take
                self.skip = 0 if self.chunk_left else 2
                continue
            if self.skip:
                take = min(self.skip, end - pos)
                self.skip -= take
                pos += take
                continue
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                break
            if line_end == pos:  # the blank line that ends the last chunk
                pos += 2
                continue
            size = int(buf[pos:line_end], 16)
            pos = line_end + 2
            if size == 0 and self.transport is not None:  # the last chunk: the stream ended
                self.transport.close()
            self.chunk_left = size
        del buf[:pos]
        self._events(now)

    def _events(self, now: float) -> None:
        text = self.text
        last = text.rfind(b"\n\n")
        if last < 0:
            return
        complete = bytes(text[: last + 2])
        del text[: last + 2]
        if not self.ready.done():
            self.ready.set_result(None)
        count = complete.count(b"\nid: ") + complete.startswith(b"id: ")
        if count:
            if self.target and len(self.times) + count >= self.target:
                self.last = complete
            self.arrived(now, count)


async def _open(kind: str, host: str, paths: list[str]) -> list[Client]:
    loop = asyncio.get_running_loop()
    address, port = host.rsplit(":", 1)
    factory = WsClient if kind == "ws" else SseClient
    clients: list[Client] = []
    for start in range(0, len(paths), 100):  # under the listen backlog
        batch = [factory(host, p) for p in paths[start : start + 100]]
        await asyncio.gather(
            *(loop.create_connection(lambda c=c: c, address, int(port)) for c in batch)
        )
        async with asyncio.timeout(30):
            await asyncio.gather(*(c.ready for c in batch))
        clients += batch
    return clients


async def _subscribe(clients: list[Client], execution_id: str) -> None:
    command = {"type": "subscribe_execution", "data": {"executionId": execution_id}}
    queues = []
    for client in clients:
        assert isinstance(client, WsClient)
        client.send_command(command)
        assert client.replies is not None
        queues.append(client.replies)
    async with asyncio.timeout(30):
        replies = await asyncio.gather(*(q.get() for q in queues))
    bad = [r for r in replies if b'"ack"' not in r]
    if bad:
        raise RuntimeError(f"subscribe_execution failed: {bad[0][:200]!r}")


async def _collect(clients: list[Client], timeout_s: float) -> dict[str, Any]:
    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*(c.done.wait() for c in clients))
    except TimeoutError:
        pass
    finished = sum(b"executionFinished" in getattr(c, "last", b"") for c in clients)
    return {"times": [c.times for c in clients], "finished": finished}


async def serve(pipe: Connection) -> None:
    """Obey the driver's commands until ``quit``; each gets one reply (or an error).

    Commands name a group of clients (e.g. graphpush's and the ceiling's, open side by side
    so that their rounds can alternate): ``open kind host paths``, ``subscribe execution_id``,
    ``expect count``, ``collect timeout_s``, ``close``."""
    loop = asyncio.get_running_loop()
    groups: dict[str, list[Client]] = {}
    while True:
        command, *args = await loop.run_in_executor(None, pipe.recv)
        if command == "quit":
            pipe.send(("ok", None))
            return
        group, *args = args
        try:
            pipe.send(("ok", await _obey(groups, group, command, args)))
        except Exception as exc:
            pipe.send(("error", f"{type(exc).__name__}: {exc}"))


async def _obey(groups: dict[str, list[Client]], group: str, command: str, args: list[Any]) -> Any:
    clients = groups.get(group, [])
    if command == "open":
        groups[group] = clients + await _open(*args)
        return len(groups[group])
    if command == "subscribe":
        await _subscribe(clients, *args)
    elif command == "expect":
        for client in clients:
            client.expect(*args)
    elif command == "collect":
        return await _collect(clients, *args)
    elif command == "close":
        for client in groups.pop(group, []):
            if client.transport is not None and not client.transport.is_closing():
                client.transport.close()
        await asyncio.sleep(0.05)
    return None


def main(pipe: Connection) -> None:
    """A client process's entry point."""
    raise_nofile()
    uvloop.run(serve(pipe))
