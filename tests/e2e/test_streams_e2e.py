"""Streams inside a node against a real uvicorn (SPEC §8, §5.4): a client that drops in the
middle of a streaming node and resumes gets exactly the chunks it missed, over WebSocket and
SSE, by pushRef cursor and by execution seq; a late joiner's snapshot has the text so far."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from support.app import Server
from support.engine import chain, node
from support.push import decode, sse_events

pytestmark = pytest.mark.timeout(60)

ANSWER = " ".join(f"token{i}" for i in range(60))
FLOW = chain(
    node("Start"),
    node("Ask", "llm", model="fake", prompt="p", response=ANSWER, delay_ms=15),
    node("File", "set", values={"filed": True}),
    name="streaming",
)


@pytest.fixture
async def server(
    serve: Callable[..., Server],
) -> AsyncIterator[tuple[Server, httpx.AsyncClient, str]]:
    started = serve()
    async with httpx.AsyncClient(base_url=started.url, timeout=10) as http:
        created = await http.post("/agents/workflows", json=FLOW)
        assert created.status_code == 201, created.text
        yield started, http, created.json()["id"]


def strip(message: dict[str, Any]) -> dict[str, Any]:
    return {"type": message["type"], "data": message["data"]}


def streamed_text(messages: list[dict[str, Any]]) -> str:
    return "".join(
        chunk["text"]
        for m in messages
        if m["type"] == "nodeExecuteStream"
        for chunk in m["data"]["chunks"]
    )


def check_whole_run(messages: list[dict[str, Any]]) -> None:
    """Stream messages only between the node's before and after; the text adds up."""
    ask = [m["type"] for m in messages if m["data"].get("nodeName") == "Ask"]
    assert ask[0] == "nodeExecuteBefore" and ask[-2:] == [
        "nodeExecuteAfter",
        "nodeExecuteAfterData",
    ]
    assert set(ask[1:-2]) == {"nodeExecuteStream"} and len(ask) > 5
    assert streamed_text(messages) == ANSWER
    assert messages[-1]["type"] == "executionFinished"


async def log(http: httpx.AsyncClient, execution_id: str) -> list[dict[str, Any]]:
    items = (await http.get(f"/agents/executions/{execution_id}/events")).json()["items"]
    return [{**item["message"], "seq": item["seq"]} for item in items]


async def log_with_streams(http: httpx.AsyncClient, execution_id: str, count: int) -> list[Any]:
    """Poll the log until it holds ``count`` stream messages (the node is mid-answer)."""
    for _ in range(500):
        messages = await log(http, execution_id)
        if sum(m["type"] == "nodeExecuteStream" for m in messages) >= count:
            return messages
        await asyncio.sleep(0.01)
    raise AssertionError("the node never streamed")


async def test_websocket_resume_by_last_event_id_mid_node_has_no_gap_and_no_duplicate(
    server: tuple[Server, httpx.AsyncClient, str],
) -> None:
    started, http, workflow_id = server
    push = started.url.replace("http", "ws") + "/agents/push?pushRef=streamws"
    first: list[dict[str, Any]] = []
    async with connect(push + "&lastEventId=0") as ws:
        body = {"push_ref": "streamws"}
        assert (
            await http.post(f"/agents/workflows/{workflow_id}/run", json=body)
        ).status_code == 202
        while sum(m["type"] == "nodeExecuteStream" for m in first) < 3:
            frame = await ws.recv()
            first.append(decode(frame))
            if first[-1]["type"] == "nodeExecuteStream":
                assert isinstance(frame, str)  # a text frame (SPEC §8)
    rest: list[dict[str, Any]] = []
    async with connect(push + f"&lastEventId={first[-1]['meta']['id']}") as ws:
        while not rest or rest[-1]["type"] != "executionFinished":
            rest.append(decode(await ws.recv()))
    messages = first + rest
    assert [m["meta"]["id"] for m in messages] == list(range(1, len(messages) + 1))
    check_whole_run(messages)


async def test_push_sse_resume_by_last_event_id_mid_node_has_no_gap_and_no_duplicate(
    server: tuple[Server, httpx.AsyncClient, str],
) -> None:
    _, http, workflow_id = server
    path, seen = "/agents/push?pushRef=streamsse", []
    headers = {"Accept": "text/event-stream", "Last-Event-ID": "0"}
    async with http.stream("GET", path, headers=headers) as response:
        body = {"push_ref": "streamsse"}
        assert (
            await http.post(f"/agents/workflows/{workflow_id}/run", json=body)
        ).status_code == 202
        async for event in sse_events(response):
            if event.id is not None:
                seen.append((int(event.id), event.json()))
            if sum(m["type"] == "nodeExecuteStream" for _, m in seen) >= 3:
                break
    headers["Last-Event-ID"] = str(seen[-1][0])
    async with http.stream("GET", path, headers=headers) as response:
        async for event in sse_events(response):
            if event.id is not None:
                seen.append((int(event.id), event.json()))
            if seen[-1][1]["type"] == "executionFinished":
                break
    assert [cursor for cursor, _ in seen] == list(range(1, len(seen) + 1))
    check_whole_run([m for _, m in seen])


async def test_subscribe_execution_after_a_seq_mid_node_replays_exactly_the_rest(
    server: tuple[Server, httpx.AsyncClient, str],
) -> None:
    started, http, workflow_id = server
    execution_id = (await http.post(f"/agents/workflows/{workflow_id}/run", json={})).json()[
        "execution_id"
    ]
    seen = await log_with_streams(http, execution_id, 2)
    after = seen[-1]["seq"]
    received: list[dict[str, Any]] = []
    push = started.url.replace("http", "ws") + "/agents/push?pushRef=streamsub"
    async with connect(push) as ws:
        command = {
            "type": "subscribe_execution",
            "data": {"executionId": execution_id, "after": after},
        }
        await ws.send(json.dumps(command))
        while not received or received[-1]["type"] != "executionFinished":
            message = decode(await ws.recv())
            if message["type"] != "ack":
                received.append(strip(message))
    whole = await log(http, execution_id)
    assert received == [strip(m) for m in whole if m["seq"] > after]
    check_whole_run([strip(m) for m in whole])


async def test_sse_resume_by_last_event_id_mid_node_has_no_gap_and_no_duplicate(
    server: tuple[Server, httpx.AsyncClient, str],
) -> None:
    _, http, workflow_id = server
    execution_id = (await http.post(f"/agents/workflows/{workflow_id}/run", json={})).json()[
        "execution_id"
    ]
    path = f"/agents/executions/{execution_id}/stream"
    first: list[tuple[int, dict[str, Any]]] = []
    async with http.stream("GET", path, headers={"Accept": "text/event-stream"}) as response:
        async for event in sse_events(response):
            if event.id is not None:
                first.append((int(event.id), event.json()))
            if sum(m["type"] == "nodeExecuteStream" for _, m in first) >= 3:
                break
    rest: list[tuple[int, dict[str, Any]]] = []
    headers = {"Accept": "text/event-stream", "Last-Event-ID": str(first[-1][0])}
    async with http.stream("GET", path, headers=headers) as response:
        async for event in sse_events(response):
            if event.id is not None:
                rest.append((int(event.id), event.json()))
    ids = [seq for seq, _ in first + rest]
    assert ids == list(range(1, len(ids) + 1))
    check_whole_run([m for _, m in first + rest])


async def test_a_late_joiner_snapshot_has_the_text_so_far(
    server: tuple[Server, httpx.AsyncClient, str],
) -> None:
    _, http, workflow_id = server
    execution_id = (await http.post(f"/agents/workflows/{workflow_id}/run", json={})).json()[
        "execution_id"
    ]
    seen = await log_with_streams(http, execution_id, 3)
    path = f"/agents/executions/{execution_id}/stream?after={seen[-1]['seq']}"
    async with http.stream("GET", path, headers={"Accept": "text/event-stream"}) as response:
        async for event in sse_events(response):
            if event.data is not None:
                snapshot = event.json()
                break
    assert snapshot["type"] == "executionSnapshot"
    assert snapshot["data"]["status"] == "running"
    [(message_id, so_far)] = snapshot["data"]["streams"]["Ask"].items()
    assert len(so_far) >= len(streamed_text(seen)) > 0
    assert ANSWER.startswith(so_far) and message_id.startswith("lc_run")
