"""Clients that stop reading (SPEC §5.3), against ``graphpush serve`` in its own process so
that its memory can be measured: each stalled connection costs the server at most its
``connection_buffer_bytes`` plus one message, everything included (the core's outbox, what
the transport holds, the socket's write buffer), and a client that reads again later finds
the close code 4008 the server wrote when it cut it off."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from support.app import free_port
from support.engine import chain, node
from transports.pump import CHUNK_BYTES

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 30
BUFFER = 8 * 1024 * 1024
BLOB = 1_000_000  # each node's output, so each nodeExecuteAfterData is about 1 MB
NODES = 3
RUNS = 5  # about 15 MB per client: past the bound plus the kernel's buffers
GATE = chain(node("Start"), node("Hold", "delay", ms=60_000), name="gate")


def workflow() -> dict[str, Any]:
    sets = [node(f"Set{i}", "set", values={"blob": str(i) * BLOB}) for i in range(NODES)]
    return chain(node("Start"), *sets, name="stalled")


class Served:
    """``python -m app serve`` on a free port, with its own data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHPUSH_")}
        env |= {
            "GRAPHPUSH_LOAD_EXAMPLES": "false",
            "GRAPHPUSH_CONNECTION_BUFFER_BYTES": str(BUFFER),
        }
        command = [sys.executable, "-m", "app", "serve", "--port", str(self.port)]
        command += ["--data-dir", str(data_dir), "--log-level", "warning"]
        self.popen = subprocess.Popen(command, cwd=ROOT, env=env)
        self.process = psutil.Process(self.popen.pid)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        deadline = time.monotonic() + 20
        while not self._up():
            assert self.popen.poll() is None and time.monotonic() < deadline, "no server"
            time.sleep(0.05)
        self.workflow_id = self.client.post("/agents/workflows", json=workflow()).json()["id"]
        self.gate_id = self.client.post("/agents/workflows", json=GATE).json()["id"]

    def _up(self) -> bool:
        try:
            return self.client.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def run(self, workflow_id: str, **body: Any) -> str:
        response = self.client.post(f"/agents/workflows/{workflow_id}/run", json=body)
        assert response.status_code == 202, response.text
        return str(response.json()["execution_id"])

    def queue_runs(self, **body: Any) -> tuple[str, list[str]]:
        """A gate run that holds the one worker, and ``RUNS`` runs queued behind it."""
        gate = self.run(self.gate_id)
        return gate, [self.run(self.workflow_id, **body) for _ in range(RUNS)]

    def release(self, gate: str, runs: list[str]) -> None:
        """Cancel the gate, then wait until every run has ended."""
        self.client.post(f"/agents/executions/{gate}/cancel")
        for execution_id in runs:
            deadline = time.monotonic() + 60
            while self.client.get(f"/agents/executions/{execution_id}").json()["status"] in (
                "new",
                "running",
            ):
                assert time.monotonic() < deadline, f"{execution_id} did not finish"
                time.sleep(0.05)

    def stop(self) -> None:
        self.client.close()
        self.popen.terminate()
        try:
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    started: list[Served] = []

    def start(name: str) -> Served:
        started.append(Served(tmp_path / name))
        return started[-1]

    yield start
    for served in started:
        served.stop()


class PeakRss:
    """The server's peak RSS above its RSS at entry, sampled every 5 ms in a thread."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRss:
        self.start = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss - self.start)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


UPGRADE = (
    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


def stalled_client(
    port: int, push_ref: str, subscribe: tuple[str, ...] = (), *, sse: bool = False
) -> socket.socket:
    """A WebSocket (or SSE) client of ``push_ref`` that reads the response head, subscribes
    to the runs of ``subscribe`` from their start, and stops reading."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    headers = "Accept: text/event-stream\r\n" if sse else UPGRADE
    request = f"GET /agents/push?pushRef={push_ref} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n"
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # byte by byte: nothing after the head is read here
    assert head.startswith(b"HTTP/1.1 200" if sse else b"HTTP/1.1 101"), head
    for execution_id in subscribe:
        data = {"executionId": execution_id, "after": 0}
        sock.sendall(masked(json.dumps({"type": "subscribe_execution", "data": data}).encode()))
    return sock


def masked(payload: bytes) -> bytes:
    """A client's text frame (masked, as RFC 6455 requires of clients); under 126 bytes."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x81, 0x80 | len(payload))) + mask + body


class Trickle:
    """Clients that mostly stall: every ``every_s`` each one reads at most ``size`` bytes."""

    def __init__(self, sockets: list[socket.socket], size: int = 64 * 1024, every_s: float = 0.25):
        self.sockets, self.size, self.every_s = sockets, size, every_s
        self._stop = threading.Event()

    def __enter__(self) -> Trickle:
        for sock in self.sockets:
            sock.setblocking(False)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        while not self._stop.wait(self.every_s):
            for sock in self.sockets:
                with contextlib.suppress(BlockingIOError, OSError):
                    sock.recv(self.size)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def read_to_the_end(sock: socket.socket) -> bytes:
    """Read until the server closes the connection."""
    data = bytearray()
    sock.settimeout(10)
    with contextlib.suppress(ConnectionResetError):  # the server aborts after a grace
        while chunk := sock.recv(1 << 20):
            data += chunk
    return bytes(data)


def close_code(stream: bytes) -> int | None:
    """The code of the first close frame in a stream of unmasked server frames."""
    at = 0
    while at + 2 <= len(stream):
        opcode, length = stream[at] & 0x0F, stream[at + 1] & 0x7F
        at += 2
        if length == 126:
            (length,) = struct.unpack_from("!H", stream, at)
            at += 2
        elif length == 127:
            (length,) = struct.unpack_from("!Q", stream, at)
            at += 8
        if opcode == 0x8:
            return int(struct.unpack_from("!H", stream, at)[0])
        at += length
    return None


def test_clients_that_read_too_slowly_cost_at_most_their_buffer_each(serve: Any) -> None:
    without = serve("without")
    without.release(*without.queue_runs())  # warm up
    gate, runs = without.queue_runs()
    with PeakRss(without.process) as baseline:  # the same runs, nobody connected
        without.release(gate, runs)
    served = serve("with")
    served.release(*served.queue_runs())
    gate, runs = served.queue_runs()
    sockets = [stalled_client(served.port, f"stalled{i}", tuple(runs)) for i in range(CLIENTS)]
    time.sleep(0.5)  # the subscriptions are in
    with PeakRss(served.process) as stalled, Trickle(sockets):
        served.release(gate, runs)
        time.sleep(0.5)
    per_client = (stalled.peak - baseline.peak) / CLIENTS
    print(json.dumps({"stalled_clients": CLIENTS, "buffer": BUFFER, "per_client": per_client}))
    for sock in sockets:
        sock.close()
    # the core's outbox and the resume buffers hold bytes every client shares; what is a
    # client's own is what its transport holds: one chunk past the socket's buffer, plus the
    # frame being written
    assert per_client <= BLOB + CHUNK_BYTES, per_client


@pytest.mark.parametrize("sse", [False, True], ids=["websocket", "sse"])
def test_a_client_that_reads_again_after_3_s_finds_it_was_cut_off(serve: Any, sse: bool) -> None:
    """WebSocket: the close frame with 4008; SSE: the end of the stream (the last chunk)."""
    served = serve("close")
    gate, runs = served.queue_runs(push_ref="late")
    sock = stalled_client(served.port, "late", sse=sse)
    stalled_at = time.monotonic()
    served.release(gate, runs)
    time.sleep(max(0.0, stalled_at + 3 - time.monotonic()))
    received = read_to_the_end(sock)
    sock.close()
    if sse:
        assert received.endswith(b"\r\n0\r\n\r\n"), received[-200:]
    else:
        assert close_code(received) == 4008, f"{len(received)} bytes, no close 4008"
    # what was queued when it was cut is dropped: it got about its socket buffers' worth
    assert len(received) < RUNS * NODES * BLOB / 2
