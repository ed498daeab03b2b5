"""Scale-out end to end: two API instances and two worker processes on loopback, sharing
a fresh PostgreSQL schema and a Redis key prefix of their own (docs/deploy.md).

Runs are executed by the workers; push messages reach clients of either instance through
Redis; cancel reaches the worker holding a run; a killed worker's run ends ``crashed``; a
client resumes on the other instance from the shared log."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from websockets.asyncio.client import connect

from app.settings import load_settings
from support.app import (
    create_workflow,
    logged_messages,
    run,
    running_app,
    wait_for_status,
)
from support.cluster import Cluster
from support.engine import chain, node
from support.push import sse_events, ws_until_finished
from support.scaleout import REDIS_URL, fresh_prefix, fresh_schema

pytestmark = pytest.mark.timeout(90)

TERMINAL = "executionFinished"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        for _ in range(2):
            cluster.start_api()
            cluster.start_worker()
        cluster.wait_ready()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def a_and_b(cluster: Cluster) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with (
        httpx.AsyncClient(base_url=cluster.urls[0], timeout=10) as a,
        httpx.AsyncClient(base_url=cluster.urls[1], timeout=10) as b,
    ):
        yield a, b


def workflow(*steps: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """A trigger, then one node per ``(type, parameters)``, one after the other."""
    nodes = [node(f"N{i}", type_, **parameters) for i, (type_, parameters) in enumerate(steps)]
    return chain(node("Start"), *nodes, name="scale-out")


async def start(client: httpx.AsyncClient, steps: Any, **body: Any) -> str:
    return await run(client, await create_workflow(client, workflow(*steps)), **body)


async def status_of(client: httpx.AsyncClient, execution_id: str, *wanted: str) -> str:
    return str((await wait_for_status(client, execution_id, *wanted, within=15))["status"])


async def sse_until_finished(response: httpx.Response) -> list[dict[str, Any]]:
    messages = []
    async with asyncio.timeout(20):
        async for event in sse_events(response):
            if event.data is None:
                continue
            messages.append({**event.json(), "seq": int(event.id) if event.id else None})
            if messages[-1]["type"] == TERMINAL:
                break
    return messages


def spec_order(nodes: int) -> list[str]:
    """SPEC §4 rule 1 for ``nodes`` nodes in a row."""
    triple = ["nodeExecuteBefore", "nodeExecuteAfter", "nodeExecuteAfterData"]
    return ["executionStarted", *triple * nodes, TERMINAL]


def ws_url(cluster: Cluster, index: int, push_ref: str) -> str:
    return cluster.urls[index].replace("http", "ws") + f"/agents/push?pushRef={push_ref}"


async def test_a_worker_s_run_reaches_a_websocket_on_a_and_an_sse_stream_on_b(
    cluster: Cluster, a_and_b: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    a, b = a_and_b
    steps = [("delay", {"ms": 300}), ("set", {"values": {"x": 1}}), ("set", {"values": {"y": 2}})]
    async with connect(ws_url(cluster, 0, "scaleA"), max_size=None) as ws:
        execution_id = await start(b, steps, push_ref="scaleA")
        async with b.stream("GET", f"/agents/executions/{execution_id}/stream") as response:
            over_sse = await sse_until_finished(response)
        over_ws = await ws_until_finished(ws)
    log = await logged_messages(a, execution_id)
    expected = spec_order(nodes=4)
    assert [m["type"] for m in log] == expected
    assert [m["type"] for m in over_ws] == expected
    assert [m["type"] for m in over_sse if m["type"] != "executionSnapshot"] == expected
    assert [m["seq"] for m in over_sse[1:]] == [m["seq"] for m in log]  # ids are the log's seq
    for got in (over_ws, over_sse[1:]):
        assert all(m["data"]["executionId"] == execution_id for m in got)
    assert over_ws[-1]["data"]["status"] == "success"
    assert over_sse[0]["data"]["status"] in ("new", "running")  # B joined the run live


async def test_the_runs_feed_on_a_and_b_follows_a_worker_s_run(
    cluster: Cluster, a_and_b: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    a, b = a_and_b
    workflow_id = await create_workflow(a, workflow(("delay", {"ms": 100})))
    subscribe = {"type": "subscribe_workflow", "data": {"workflowId": workflow_id}}
    async with (
        connect(ws_url(cluster, 0, "feedA")) as ws,
        b.stream("GET", f"/agents/workflows/{workflow_id}/stream") as response,
        asyncio.timeout(20),
    ):
        await ws.send(msgspec.json.encode(subscribe).decode())
        over_ws = [msgspec.json.decode(await ws.recv()) for _ in range(2)]
        events = (e.json() async for e in sse_events(response) if e.data is not None)
        over_sse = [await anext(events)]
        execution_id = await run(b, workflow_id)
        over_ws += [msgspec.json.decode(await ws.recv()) for _ in range(2)]
        over_sse += [await anext(events) for _ in range(2)]
    lifecycle = [("executionStarted", execution_id), ("executionFinished", execution_id)]
    assert [m["type"] for m in over_ws[:2]] == ["runsSnapshot", "ack"]
    assert over_sse[0]["type"] == "runsSnapshot"
    for got in (over_ws[2:], over_sse[1:]):
        assert [(m["type"], m["data"]["executionId"]) for m in got] == lifecycle


async def test_cancel_sent_to_b_stops_a_run_held_by_a_worker(
    cluster: Cluster, a_and_b: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    a, b = a_and_b
    execution_id = await start(a, [("delay", {"ms": 60_000}), ("set", {"values": {}})])
    await status_of(b, execution_id, "running")
    started = time.monotonic()
    assert (await b.post(f"/agents/executions/{execution_id}/cancel")).status_code == 202
    assert await status_of(a, execution_id, "canceled", "success", "error") == "canceled"
    assert time.monotonic() - started < 5
    log = await logged_messages(b, execution_id)
    assert log[-1]["type"] == TERMINAL and log[-1]["data"]["status"] == "canceled"
    assert [m["type"] for m in log].count(TERMINAL) == 1
    queued = await start(b, [("set", {"values": {}})])
    assert await status_of(a, queued, "success", "error") == "success"


async def test_a_killed_worker_s_run_ends_crashed_and_the_other_keeps_serving(
    cluster: Cluster, a_and_b: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    a, b = a_and_b
    execution_id = await start(a, [("delay", {"ms": 60_000})])
    await status_of(a, execution_id, "running")
    victim = cluster.holder(execution_id)
    async with a.stream("GET", f"/agents/executions/{execution_id}/stream") as response:
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=5)
        streamed = await sse_until_finished(response)
    assert streamed[-1]["type"] == TERMINAL and streamed[-1]["data"]["status"] == "crashed"
    body = (await b.get(f"/agents/executions/{execution_id}")).json()
    assert body["status"] == "crashed"
    assert body["error"]["type"] == "crashed"
    for _ in range(3):  # the surviving worker takes every new run
        served = await start(b, [("set", {"values": {"after": "crash"}})])
        assert await status_of(a, served, "success", "error") == "success"
    cluster.start_worker()  # back to two for the other tests
    cluster.wait_ready()


async def test_a_client_that_reconnects_to_the_other_instance_resumes_without_loss(
    cluster: Cluster, a_and_b: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    a, b = a_and_b
    steps = [("delay", {"ms": 400}), ("set", {"values": {"x": 1}}), ("delay", {"ms": 400})]
    execution_id = await start(a, steps)
    first: list[dict[str, Any]] = []
    async with a.stream("GET", f"/agents/executions/{execution_id}/stream") as response:
        async for event in sse_events(response):
            if event.id is not None:
                first.append({**event.json(), "seq": int(event.id)})
            if len(first) == 3:  # executionStarted, then Start's before and after
                break
    last_seen = first[-1]["seq"]
    async with connect(ws_url(cluster, 1, "resumer"), max_size=None) as ws:
        data = {"executionId": execution_id, "after": last_seen}
        await ws.send(msgspec.json.encode({"type": "subscribe_execution", "data": data}).decode())
        rest = await ws_until_finished(ws)
    log = await logged_messages(b, execution_id)
    resumed = [{**m, "seq": entry["seq"]} for m, entry in zip(rest, log[last_seen:], strict=True)]
    assert [m["seq"] for m in first] == list(range(1, last_seen + 1))
    strip = [{k: v for k, v in m.items() if k != "meta"} for m in resumed]
    assert strip == log[last_seen:]
    assert log[-1]["type"] == TERMINAL and len(first) + len(rest) == len(log)


async def test_a_waiting_run_resumed_through_b_continues_on_a_worker(
    cluster: Cluster, a_and_b: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    """The wait is checkpointed in PostgreSQL; any worker picks the resumed run up."""
    a, b = a_and_b
    steps = [("set", {"values": {"x": 1}}), ("wait", {}), ("set", {"values": {"y": 2}})]
    async with connect(ws_url(cluster, 0, "waiter"), max_size=None) as ws:
        execution_id = await start(a, steps, push_ref="waiter")
        await status_of(b, execution_id, "waiting")
        resumed = await b.post(f"/agents/executions/{execution_id}/resume", json={"value": 7})
        assert resumed.status_code == 202, resumed.text
        over_ws = await ws_until_finished(ws)
    types = [m["type"] for m in over_ws]
    assert types.count("executionStarted") == 1
    assert types.index("executionWaiting") < types.index(TERMINAL)
    assert types.index(TERMINAL) == len(types) - 1
    assert over_ws[-1]["data"]["status"] == "success"
    assert [m["type"] for m in await logged_messages(a, execution_id)] == types


async def test_a_worker_s_streamed_tokens_cross_redis_to_both_instances_in_order(
    cluster: Cluster, a_and_b: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    """SPEC §8: stream messages take the path every message takes, so they cross processes."""
    a, b = a_and_b
    answer = " ".join(f"t{i}" for i in range(40))
    llm = {"model": "fake", "prompt": "p", "response": answer, "delay_ms": 10}
    async with connect(ws_url(cluster, 0, "streamer"), max_size=None) as ws:
        execution_id = await start(b, [("llm", llm)], push_ref="streamer")
        async with b.stream("GET", f"/agents/executions/{execution_id}/stream") as response:
            over_sse = await sse_until_finished(response)
        over_ws = await ws_until_finished(ws)
    log = await logged_messages(a, execution_id)
    types = [m["type"] for m in log]
    streams = [m for m in log if m["type"] == "nodeExecuteStream"]
    assert 1 < len(streams) < 40
    first, last = (
        types.index("nodeExecuteStream"),
        len(types) - types[::-1].index("nodeExecuteStream"),
    )
    assert types[first - 1] == "nodeExecuteBefore" and types[last] == "nodeExecuteAfter"
    text = "".join(c["text"] for m in streams for c in m["data"]["chunks"])
    assert text == answer
    assert [{k: v for k, v in m.items() if k != "meta"} for m in over_ws] == [
        {k: v for k, v in m.items() if k != "seq"} for m in log
    ]
    assert [m["seq"] for m in over_sse if m["type"] != "executionSnapshot"] == [
        m["seq"] for m in log
    ]


async def test_a_full_shared_queue_answers_503(tmp_path: Path) -> None:
    """An API instance with no workers: runs stay queued in Redis up to the bound."""
    settings = load_settings(
        {
            "data_dir": tmp_path,
            "load_examples": False,
            "workers": 0,
            "queue_bound": 2,
            "database_url": fresh_schema(),
            "redis_url": REDIS_URL,
            "redis_prefix": fresh_prefix(),
        },
        environ={},
    )
    async with running_app(settings) as (_, client):
        created = await client.post("/agents/workflows", json=workflow(("set", {"values": {}})))
        run_url = f"/agents/workflows/{created.json()['id']}/run"
        assert [(await client.post(run_url, json={})).status_code for _ in range(2)] == [202, 202]
        refused = await client.post(run_url, json={})
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        listed = (await client.get("/agents/executions?status=new")).json()
        assert listed["total"] == 2  # the refused run was never stored
