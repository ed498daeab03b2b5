"""The runs feed (SPEC §11) through the real app on a real uvicorn: WebSocket and SSE,
snapshot then live with no gap across a reconnect, API-key ownership, refusals."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from app.main import create_app
from app.settings import load_settings
from support.app import wait_for_status
from support.engine import chain, node
from support.push import SseEvent, decode, serving, sse_events

pytestmark = pytest.mark.timeout(60)

FLOW = chain(node("Start"), node("A", "set", values={"a": 1}), name="feed")
LIFECYCLE = {"executionStarted", "executionWaiting", "executionFinished"}


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, httpx.AsyncClient, str]]:
    """A real server, a client and the id of workflow ``FLOW`` on it."""
    settings = load_settings({"data_dir": tmp_path, "load_examples": False}, environ={})
    async with (
        serving(create_app(settings), settings) as host,
        httpx.AsyncClient(base_url=f"http://{host}", timeout=10) as client,
    ):
        created = await client.post("/agents/workflows", json=FLOW)
        assert created.status_code == 201, created.text
        yield host, client, created.json()["id"]


async def run_to_end(client: httpx.AsyncClient, workflow_id: str) -> str:
    answer = await client.post(f"/agents/workflows/{workflow_id}/run", json={})
    assert answer.status_code == 202, answer.text
    execution_id: str = answer.json()["execution_id"]
    await wait_for_status(client, execution_id, "success")
    return execution_id


async def ws_read(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(10):
        return [decode(await ws.recv()) for _ in range(count)]


def lifecycle_of(execution_id: str) -> list[tuple[str, str]]:
    return [("executionStarted", execution_id), ("executionFinished", execution_id)]


def kinds(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(m["type"], m["data"].get("executionId", "")) for m in messages]


async def test_websocket_feed_snapshot_then_live_and_no_gap_across_a_reconnect(
    served: tuple[str, httpx.AsyncClient, str],
) -> None:
    host, client, workflow_id = served
    older = [await run_to_end(client, workflow_id) for _ in range(3)]
    url = f"ws://{host}/agents/push?pushRef=feedref"
    subscribe = json.dumps(
        {"type": "subscribe_workflow", "data": {"workflowId": workflow_id, "limit": 2}}
    )
    async with connect(url) as ws:
        await ws.send(subscribe)
        snapshot, ack = await ws_read(ws, 2)
        listed = await client.get(f"/agents/workflows/{workflow_id}/executions?limit=2")
        assert snapshot["type"] == "runsSnapshot"
        assert snapshot["data"]["workflowId"] == workflow_id
        assert snapshot["data"]["items"] == listed.json()["items"]
        assert [i["execution_id"] for i in snapshot["data"]["items"]] == older[:0:-1]
        assert ack == {
            "type": "ack",
            "data": {"command": "subscribe_workflow", "workflowId": workflow_id},
        }
        live = await run_to_end(client, workflow_id)
        got = await ws_read(ws, 2)
        assert kinds(got) == lifecycle_of(live)
        last_id = got[-1]["meta"]["id"]
        assert [snapshot["meta"]["id"], *(m["meta"]["id"] for m in got)] == [1, 2, 3]
    away = await run_to_end(client, workflow_id)  # while no connection is open
    async with connect(f"{url}&lastEventId={last_id}") as ws:
        missed = await ws_read(ws, 2)
        after = await run_to_end(client, workflow_id)
        again = await ws_read(ws, 2)
    assert kinds(missed) + kinds(again) == lifecycle_of(away) + lifecycle_of(after)
    assert [m["meta"]["id"] for m in missed + again] == [4, 5, 6, 7]


async def sse_until(
    events: AsyncIterator[SseEvent], count: int
) -> list[tuple[str | None, dict[str, Any]]]:
    got: list[tuple[str | None, dict[str, Any]]] = []
    async with asyncio.timeout(10):
        async for event in events:
            if event.data is not None:
                got.append((event.id, event.json()))
                if len(got) == count:
                    return got
    raise AssertionError(f"the stream ended after {got}")


async def test_sse_feed_snapshot_then_live_and_resumes_with_last_event_id(
    served: tuple[str, httpx.AsyncClient, str],
) -> None:
    _, client, workflow_id = served
    older = await run_to_end(client, workflow_id)
    path = f"/agents/workflows/{workflow_id}/stream"
    async with client.stream("GET", path, params={"limit": 5}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
        [(snapshot_id, snapshot)] = await sse_until(events, 1)
        assert snapshot["type"] == "runsSnapshot"
        assert [i["execution_id"] for i in snapshot["data"]["items"]] == [older]
        live = await run_to_end(client, workflow_id)
        got = await sse_until(events, 2)
    assert [(m["type"], m["data"]["executionId"]) for _, m in got] == lifecycle_of(live)
    assert snapshot_id is not None
    ids = [int(snapshot_id), *(int(i or 0) for i, _ in got)]
    assert ids == list(range(ids[0], ids[0] + 3))
    away = await run_to_end(client, workflow_id)
    headers = {"Last-Event-ID": str(ids[-1])}
    async with client.stream("GET", path, headers=headers) as response:
        events = sse_events(response)
        missed = await sse_until(events, 2)  # no snapshot: the log covers the gap
        after = await run_to_end(client, workflow_id)
        again = await sse_until(events, 2)
    assert [(m["type"], m["data"]["executionId"]) for _, m in missed + again] == (
        lifecycle_of(away) + lifecycle_of(after)
    )
    assert [int(i or 0) for i, _ in missed + again] == list(range(ids[-1] + 1, ids[-1] + 5))


async def test_sse_feed_refusals(served: tuple[str, httpx.AsyncClient, str]) -> None:
    _, client, workflow_id = served
    unknown = await client.get("/agents/workflows/nope/stream")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    for bad in ("0", "201", "x"):
        answer = await client.get(f"/agents/workflows/{workflow_id}/stream?limit={bad}")
        assert answer.status_code == 422
        assert answer.json()["error"]["details"][0]["path"] == "limit"
    cursor = await client.get(f"/agents/workflows/{workflow_id}/stream?lastEventId=-1")
    assert cursor.status_code == 400


async def test_an_api_key_follows_only_its_own_runs(tmp_path: Path) -> None:
    settings = load_settings(
        {"data_dir": tmp_path, "load_examples": False, "api_keys": ("alice-key", "bob-key")},
        environ={},
    )
    alice, bob = ({"Authorization": f"Bearer {k}"} for k in ("alice-key", "bob-key"))
    async with (
        serving(create_app(settings), settings) as host,
        httpx.AsyncClient(base_url=f"http://{host}", timeout=10, headers=alice) as client,
    ):
        workflow_id = (await client.post("/agents/workflows", json=FLOW)).json()["id"]
        mine = await run_to_end(client, workflow_id)
        client.headers.update(bob)
        await run_to_end(client, workflow_id)
        client.headers.update(alice)
        assert (await client.head(f"/agents/workflows/{workflow_id}/stream")).status_code == 200
        client.headers.pop("Authorization")
        refused = await client.get(f"/agents/workflows/{workflow_id}/stream")
        assert refused.status_code == 401
        url = f"ws://{host}/agents/push?pushRef=aliceref&token=alice-key"
        async with connect(url) as ws:
            await ws.send(
                json.dumps({"type": "subscribe_workflow", "data": {"workflowId": workflow_id}})
            )
            snapshot, _ack = await ws_read(ws, 2)
            assert [i["execution_id"] for i in snapshot["data"]["items"]] == [mine]
            client.headers.update(bob)
            await run_to_end(client, workflow_id)
            client.headers.update(alice)
            live = await run_to_end(client, workflow_id)
            assert kinds(await ws_read(ws, 2)) == lifecycle_of(live)


async def test_a_token_scoped_to_the_workflow_may_follow_its_feed_and_no_other(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        {"data_dir": tmp_path, "load_examples": False, "api_keys": ("alice-key",)}, environ={}
    )
    key = {"Authorization": "Bearer alice-key"}
    async with (
        serving(create_app(settings), settings) as host,
        httpx.AsyncClient(base_url=f"http://{host}", timeout=10, headers=key) as client,
    ):
        workflow_id = (await client.post("/agents/workflows", json=FLOW)).json()["id"]
        other_id = (await client.post("/agents/workflows", json={**FLOW, "id": "other"})).json()[
            "id"
        ]
        mine = await run_to_end(client, workflow_id)

        async def token(**body: Any) -> str:
            minted = await client.post("/agents/tokens", json={"scopes": ["read"], **body})
            assert minted.status_code == 201, minted.text
            return str(minted.json()["token"])

        scoped = await token(workflow_id=workflow_id)
        client.headers.pop("Authorization")
        path = f"/agents/workflows/{workflow_id}/stream"
        async with client.stream("GET", path, params={"token": scoped}) as response:
            assert response.status_code == 200
            [(_, snapshot)] = await sse_until(sse_events(response), 1)
        assert [i["execution_id"] for i in snapshot["data"]["items"]] == [mine]
        refused = await client.get(f"/agents/workflows/{other_id}/stream?token={scoped}")
        assert refused.status_code == 403
        url = f"ws://{host}/agents/push?pushRef=tokenref&token={scoped}"
        async with connect(url) as ws:
            for wanted in (other_id, workflow_id):
                subscribe = {"type": "subscribe_workflow", "data": {"workflowId": wanted}}
                await ws.send(json.dumps(subscribe))
            refusal, snapshot_ws, ack = await ws_read(ws, 3)
        assert (refusal["type"], refusal["data"]["code"]) == ("error", "forbidden")
        assert (snapshot_ws["type"], ack["type"]) == ("runsSnapshot", "ack")
