"""End to end against a real uvicorn: slow consumers, protocol limits, the real app."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import websockets
from websockets.asyncio.client import connect

from app.bus.base import PushEvent
from app.main import create_app
from app.messages import encode
from app.settings import Settings, load_settings
from support.app import Server
from support.engine import chain, node
from support.push import (
    Harness,
    before,
    decode,
    serving,
    sse_events,
    sse_text,
    ws_until_finished,
)
from support.wait import eventually

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def served() -> AsyncIterator[tuple[Harness, str]]:
    harness = Harness(Settings(load_examples=False, connection_buffer_bytes=1 << 20))
    async with serving(harness.app, harness.settings) as host:
        yield harness, host


async def stalled_client(host: str, push_ref: str, transport: str) -> socket.socket:
    """A WebSocket or SSE client that sends its request and then never reads."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    address, port = host.split(":")
    await loop.sock_connect(sock, (address, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    upgrade = (
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
    )
    headers = upgrade if transport == "websocket" else "Accept: text/event-stream\r\n"
    request = f"GET /agents/push?pushRef={push_ref} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n"
    await loop.sock_sendall(sock, request.encode())
    status = b"HTTP/1.1 101" if transport == "websocket" else b"HTTP/1.1 200"
    assert (await loop.sock_recv(sock, 4096)).startswith(status)
    return sock


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_a_client_that_never_reads_is_cut_off_and_delays_nobody(
    served: tuple[Harness, str], transport: str
) -> None:
    harness, host = served
    slow = await stalled_client(host, "slow", transport)
    process, count, size = psutil.Process(), 400, 64 * 1024
    async with connect(f"ws://{host}/agents/push?pushRef=fast", max_size=None) as fast:
        slow_conn = harness.hub.registry.sessions["slow"].connection
        assert slow_conn is not None
        rss_before, peak_queue = process.memory_info().rss, 0
        received = asyncio.create_task(_receive(fast, count))
        for i in range(count):
            blob = encode(before("e1", "x" * size, i))  # a 64 KiB node name
            harness.bus.publish_nowait(
                PushEvent("e1", i + 1, "nodeExecuteBefore", blob, broadcast=True)
            )
            peak_queue = max(peak_queue, slow_conn.queued_bytes)
            await asyncio.sleep(0)
        assert await asyncio.wait_for(received, 10) == list(range(1, count + 1))
        rss_growth = process.memory_info().rss - rss_before
    assert slow_conn.aborted and slow_conn.close_code == 4008
    assert peak_queue <= harness.settings.connection_buffer_bytes
    assert not harness.hub.has("slow")
    assert rss_growth < 64 * 1024 * 1024, rss_growth  # 25 MiB went out; nothing piled up
    slow.close()


async def test_large_messages_arrive_whole_with_their_meta_id(served: tuple[Harness, str]) -> None:
    """Payloads past a write's chunk are handed to the socket as views of the shared bytes,
    with ``meta.id`` written after them: the frames must still be whole and valid."""
    harness, host = served
    sizes = [10, 300_000, 20, 700_000, 30]
    async with connect(f"ws://{host}/agents/push?pushRef=big", max_size=None) as ws:
        for seq, size in enumerate(sizes, 1):
            blob = encode(before("e1", "x" * size, seq))  # a node name of ``size`` characters
            harness.bus.publish_nowait(PushEvent("e1", seq, "nodeExecuteBefore", blob, "big"))
        got = [decode(await asyncio.wait_for(ws.recv(), 10)) for _ in sizes]
    assert [m["meta"]["id"] for m in got] == [1, 2, 3, 4, 5]
    assert [len(m["data"]["nodeName"]) for m in got] == sizes


async def _receive(ws: Any, count: int) -> list[int]:
    return [decode(await ws.recv())["meta"]["id"] for _ in range(count)]


async def test_per_message_deflate_is_declined(served: tuple[Harness, str]) -> None:
    _, host = served
    async with connect(f"ws://{host}/agents/push?pushRef=abc") as ws:  # offers deflate
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        await ws.send('{"type":"ping"}')
        assert decode(await ws.recv()) == {"type": "pong"}


async def test_inbound_frame_over_64_kib_closes_with_1009(served: tuple[Harness, str]) -> None:
    _, host = served
    async with connect(f"ws://{host}/agents/push?pushRef=other") as other:
        for _ in range(5):
            async with connect(f"ws://{host}/agents/push?pushRef=big") as ws:
                await ws.send("x" * (64 * 1024 + 1))
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        await other.send('{"type":"ping"}')
        assert decode(await other.recv()) == {"type": "pong"}


async def test_cross_site_origin_closes_websocket_with_1008(served: tuple[Harness, str]) -> None:
    _, host = served
    uri = f"ws://{host}/agents/push?pushRef=abc"
    async with connect(uri, origin="http://evil.example") as ws:  # type: ignore[arg-type]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_no_task_or_connection_left_after_clients_go_away(
    served: tuple[Harness, str],
) -> None:
    harness, host = served
    baseline = len(asyncio.all_tasks())
    async with httpx.AsyncClient(base_url=f"http://{host}") as client:
        for i in range(10):
            async with connect(f"ws://{host}/agents/push?pushRef=w{i}") as ws:
                await ws.send('{"type":"ping"}')
                await ws.recv()
            headers = {"accept": "text/event-stream"}
            async with client.stream("GET", f"/agents/push?pushRef=s{i}", headers=headers) as r:
                await anext(sse_events(r))
    await eventually(
        lambda: not harness.hub.connection_count and len(asyncio.all_tasks()) <= baseline
    )


# ---- through the real app (create_app) -----------------------------------------------------


E2E_FLOW = chain(
    node("Start"), node("A", "set", values={"a": 1}), node("B", "set", values={"b": 2}), name="e2e"
)


async def test_real_app_pushes_a_run_over_websocket_and_streams_it_over_sse(tmp_path: Path) -> None:
    settings = load_settings({"data_dir": tmp_path, "load_examples": False}, environ={})
    async with (
        serving(create_app(settings), settings) as host,
        httpx.AsyncClient(base_url=f"http://{host}", timeout=10) as client,
    ):
        created = await client.post("/agents/workflows", json=E2E_FLOW)
        assert created.status_code == 201, created.text
        async with connect(f"ws://{host}/agents/push?pushRef=e2eref") as ws:
            run = await client.post(
                f"/agents/workflows/{created.json()['id']}/run", json={"push_ref": "e2eref"}
            )
            assert run.status_code == 202, run.text
            pushed = await ws_until_finished(ws)
        types = [p["type"] for p in pushed]
        assert types == ["executionStarted"] + [
                "nodeExecuteBefore", "nodeExecuteAfter", "nodeExecuteAfterData"
            ] * 3 + ["executionFinished"]  # fmt: skip
        assert [p["meta"]["id"] for p in pushed] == list(range(1, len(pushed) + 1))
        execution_id = run.json()["execution_id"]
        stream = await client.get(f"/agents/executions/{execution_id}/stream")
        events = [e.json() for e in sse_text(stream.text) if e.data is not None]
    assert events[0]["type"] == "executionSnapshot"
    assert [e["type"] for e in events[1:]] == types


async def test_metrics_count_the_push_passes_that_wrote_a_run_to_its_client(
    tmp_path: Path,
) -> None:
    settings = load_settings({"data_dir": tmp_path, "load_examples": False}, environ={})
    async with (
        serving(create_app(settings), settings) as host,
        httpx.AsyncClient(base_url=f"http://{host}", timeout=10) as client,
    ):
        created = await client.post("/agents/workflows", json=E2E_FLOW)
        async with connect(f"ws://{host}/agents/push?pushRef=passes") as ws:
            before_run = _series((await client.get("/metrics")).text)
            run = await client.post(
                f"/agents/workflows/{created.json()['id']}/run", json={"push_ref": "passes"}
            )
            assert run.status_code == 202, run.text
            pushed = await ws_until_finished(ws)
            after_run = _series((await client.get("/metrics")).text)
    passes = after_run["graphpush_push_passes_total"] - before_run["graphpush_push_passes_total"]
    writes = after_run["graphpush_push_pass_writes_total"]
    assert 1 <= passes <= len(pushed)  # one pass per write at most; messages may share one
    assert writes - before_run["graphpush_push_pass_writes_total"] == passes  # one client
    assert after_run["graphpush_push_pass_seconds_total"] > 0
    assert after_run["graphpush_push_pass_max_seconds"] > 0


def _series(text: str) -> dict[str, float]:
    """The samples of a Prometheus text, by series name."""
    samples = (line.split(" ") for line in text.splitlines() if not line.startswith("#"))
    return {name: float(value) for name, value in samples}


def test_open_streams_end_cleanly_when_the_server_starts_to_stop(tmp_path: Path) -> None:
    """uvicorn waits for open responses before the lifespan's shutdown: the streams must end
    themselves (a complete chunked body) rather than be cancelled by the graceful timeout."""
    settings = load_settings({"data_dir": tmp_path, "load_examples": False}, environ={})
    server = Server(create_app(settings), settings).__enter__()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            headers = {"accept": "text/event-stream"}
            with client.stream("GET", "/agents/push?pushRef=s", headers=headers) as response:
                chunks = response.iter_raw()
                assert next(chunks).startswith(b":ok")
                server.server.should_exit = True
                rest = b"".join(chunks)  # raises if the body is cut off
        assert rest == b""
    finally:
        server.__exit__()
    assert not server.thread.is_alive()
