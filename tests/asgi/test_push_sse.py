"""SSE transports against a real uvicorn (TestClient would buffer the endless streams)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app import messages as m
from app.settings import Settings
from support.push import (
    Harness,
    SseEvent,
    run_messages,
    serving,
    sse_events,
    started,
    waiting,
)
from support.wait import eventually

pytestmark = pytest.mark.timeout(30)
SSE = {"accept": "text/event-stream"}


@pytest.fixture
async def served() -> AsyncIterator[tuple[Harness, httpx.AsyncClient]]:
    harness = Harness(Settings(load_examples=False, ping_interval_s=25.0))
    async with (
        serving(harness.app, harness.settings) as host,
        httpx.AsyncClient(base_url=f"http://{host}", timeout=10) as client,
    ):
        yield harness, client


async def take(
    events: AsyncIterator[SseEvent], n: int, *, comments: bool = False
) -> list[SseEvent]:
    out: list[SseEvent] = []
    async with asyncio.timeout(5):
        async for event in events:
            if event.comment is None or comments:
                out.append(event)
            if len(out) == n:
                break
    return out


def types(events: list[SseEvent]) -> list[str]:
    return [e.json()["type"] for e in events]


async def test_push_sse_sends_ok_then_messages_with_connection_ids(
    served: tuple[Harness, httpx.AsyncClient],
) -> None:
    harness, client = served
    harness.service.create("e1", push_ref="abc")
    async with client.stream("GET", "/agents/push?pushRef=abc", headers=SSE) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        events = sse_events(response)
        assert (await take(events, 1, comments=True))[0].comment == "ok"
        messages = run_messages("e1", nodes=1)
        for message in messages:
            harness.service.emit("e1", message)
        got = await take(events, len(messages))
    assert [e.id for e in got] == [str(i) for i in range(1, len(messages) + 1)]
    assert [e.json() for e in got] == [m.encoder.encode(x) and _d(x) for x in messages]


def _d(message: m.ExecutionMessage) -> dict[str, Any]:
    import msgspec

    out: dict[str, Any] = msgspec.json.decode(m.encode(message))
    return out


async def test_push_sse_resumes_from_last_event_id_exactly_once(
    served: tuple[Harness, httpx.AsyncClient],
) -> None:
    harness, client = served
    harness.service.create("e1", push_ref="abc")
    messages = run_messages("e1", nodes=3)
    async with client.stream("GET", "/agents/push?pushRef=abc", headers=SSE) as response:
        events = sse_events(response)
        for message in messages[:5]:
            harness.service.emit("e1", message)
        first = await take(events, 3)
    for message in messages[5:]:
        harness.service.emit("e1", message)
    headers = {**SSE, "last-event-id": first[-1].id or ""}
    async with client.stream("GET", "/agents/push?pushRef=abc", headers=headers) as response:
        rest = await take(sse_events(response), len(messages) - 3)
    assert [e.id for e in first + rest] == [str(i) for i in range(1, len(messages) + 1)]
    assert types(first + rest) == [_d(x)["type"] for x in messages]


async def test_push_sse_resume_failed_when_the_gap_is_not_buffered(
    served: tuple[Harness, httpx.AsyncClient],
) -> None:
    _, client = served
    headers = {**SSE, "last-event-id": "41"}
    async with client.stream("GET", "/agents/push?pushRef=fresh", headers=headers) as response:
        (event,) = await take(sse_events(response), 1)
    assert event.id is None
    assert event.json() == {"type": "resumeFailed", "data": {"lastEventId": 41}}


async def test_execution_stream_snapshot_log_live_and_end(
    served: tuple[Harness, httpx.AsyncClient],
) -> None:
    harness, client = served
    harness.service.create("e1")
    messages = run_messages("e1", nodes=2)
    for message in messages[:3]:
        harness.service.emit("e1", message)
    async with client.stream("GET", "/agents/executions/e1/stream?after=1") as response:
        assert response.headers["cache-control"] == "no-cache"
        events = sse_events(response)
        head = await take(events, 3)
        for message in messages[3:]:
            harness.service.emit("e1", message)
        tail = [e async for e in events if e.comment is None]  # ends after executionFinished
    assert head[0].id is None and head[0].json() == {
        "type": "executionSnapshot",
        "data": {
            "executionId": "e1",
            "status": "running",
            "graph_state": {"completed_nodes": []},
            "streams": {},
        },
    }
    got = head[1:] + tail
    assert [e.id for e in got] == [str(s) for s in range(2, len(messages) + 1)]
    assert types(got) == [_d(x)["type"] for x in messages[1:]]


async def test_execution_stream_resumes_with_last_event_id(
    served: tuple[Harness, httpx.AsyncClient],
) -> None:
    harness, client = served
    harness.service.create("e1")
    messages = run_messages("e1", nodes=2)
    for message in messages[:4]:
        harness.service.emit("e1", message)
    async with client.stream("GET", "/agents/executions/e1/stream") as response:
        first = (await take(sse_events(response), 4))[1:]  # snapshot, then seq 1..3
    for message in messages[4:]:
        harness.service.emit("e1", message)
    headers = {"last-event-id": first[-1].id or ""}
    async with client.stream("GET", "/agents/executions/e1/stream", headers=headers) as response:
        rest = [e async for e in sse_events(response) if e.comment is None][1:]
    assert [e.id for e in first + rest] == [str(s) for s in range(1, len(messages) + 1)]


async def test_stream_of_a_waiting_run_stays_open_until_it_finishes(
    served: tuple[Harness, httpx.AsyncClient],
) -> None:
    harness, client = served
    harness.service.create("e1")
    harness.service.emit("e1", started("e1"))
    harness.service.emit("e1", waiting("e1"))
    async with client.stream("GET", "/agents/executions/e1/stream") as response:
        events = sse_events(response)
        assert types(await take(events, 3)) == [
            "executionSnapshot",
            "executionStarted",
            "executionWaiting",
        ]

        async def rest() -> list[SseEvent]:
            return [e async for e in events if e.comment is None]

        reader = asyncio.create_task(rest())
        await asyncio.sleep(0.3)
        assert not reader.done()  # waiting: the stream stays open
        harness.service.emit("e1", run_messages("e1")[-1])
        tail = await asyncio.wait_for(reader, 5)
    assert types(tail) == ["executionFinished"]


async def test_stream_of_a_finished_run_replays_and_ends(
    served: tuple[Harness, httpx.AsyncClient],
) -> None:
    harness, client = served
    harness.service.create("e1")
    for message in run_messages("e1", nodes=1):
        harness.service.emit("e1", message)
    response = await client.get("/agents/executions/e1/stream", headers={"last-event-id": "5"})
    assert response.status_code == 200
    assert response.text.startswith(":ok\n\n")
    assert '"executionSnapshot"' in response.text and "id:" not in response.text


async def test_refusals_are_json_errors(served: tuple[Harness, httpx.AsyncClient]) -> None:
    _, client = served
    cross = await client.get(
        "/agents/push?pushRef=abc", headers={**SSE, "origin": "http://evil.example"}
    )
    assert cross.status_code == 403
    assert cross.json()["error"]["code"] == "forbidden"
    stream = await client.get(
        "/agents/executions/e1/stream", headers={"origin": "http://evil.example"}
    )
    assert stream.status_code == 403
    assert (await client.get("/agents/push?pushRef=no%20pe", headers=SSE)).status_code == 400
    assert (await client.get("/agents/executions/nope/stream")).status_code == 404
    assert (
        await client.get("/agents/push?pushRef=a", headers={"accept": "application/json"})
    ).status_code == 406


async def test_missing_and_same_origin_are_accepted(
    served: tuple[Harness, httpx.AsyncClient],
) -> None:
    _, client = served
    host = str(client.base_url).split("//")[1].rstrip("/")
    for headers in (SSE, {**SSE, "origin": f"http://{host}"}):
        async with client.stream("GET", "/agents/push?pushRef=abc", headers=headers) as response:
            assert response.status_code == 200
            assert (await take(sse_events(response), 1, comments=True))[0].comment == "ok"


async def test_api_keys_answer_401_without_a_key() -> None:
    harness = Harness(Settings(load_examples=False, api_keys=("k1",)))
    async with (
        serving(harness.app, harness.settings) as host,
        httpx.AsyncClient(base_url=f"http://{host}") as client,
    ):
        refused = await client.get("/agents/push?pushRef=abc", headers=SSE)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
        auth = {**SSE, "authorization": "Bearer k1"}
        async with client.stream("GET", "/agents/push?pushRef=abc", headers=auth) as response:
            assert response.status_code == 200


async def test_comment_pings_keep_the_stream_alive() -> None:
    harness = Harness(Settings(load_examples=False, ping_interval_s=0.1))
    async with (
        serving(harness.app, harness.settings) as host,
        httpx.AsyncClient(base_url=f"http://{host}") as client,
        client.stream("GET", "/agents/push?pushRef=abc", headers=SSE) as response,
    ):
        got = await take(sse_events(response), 3, comments=True)
    assert [e.comment for e in got] == ["ok", "ping", "ping"]


async def test_sse_connections_are_deregistered_when_clients_go_away(
    served: tuple[Harness, httpx.AsyncClient],
) -> None:
    harness, client = served
    for i in range(10):
        async with client.stream("GET", f"/agents/push?pushRef=c{i}", headers=SSE) as response:
            await take(sse_events(response), 1, comments=True)
    await eventually(lambda: harness.hub.connection_count == 0)
