"""The message order of one execution (SPEC §4 cases 1-5), read back from the stored log
through the real app, with every message's shape checked against real n8n captures."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import msgspec
import pytest
from starlette.applications import Starlette

from app.bus.base import PushEvent
from app.runtime import Runtime
from app.settings import Settings
from support.app import create_workflow, logged_messages, run, running_app, wait_for_status
from support.engine import (
    NODE_EVENTS,
    chain,
    error_body,
    kinds,
    node,
    node_triples,
    null_paths,
    reference,
    shape,
    wait_for_log,
    workflow,
)

pytestmark = pytest.mark.timeout(30)

SUCCESS_FLOW = chain(
    node("Start"),
    node("B", "set", values={"b": "hello"}),
    node("C", "set", values={"c": "world"}),
    name="push-success",
)
FAILING_FLOW = chain(
    node("Start"),
    node("B", "fail", message="boom from B", description="B always fails"),
    node("C", "set", values={"c": 1}),
)
WAITING_FLOW = chain(
    node("Start"),
    node("Approve", "wait", message="approve?"),
    node("Done", "set", values={"done": True}),
)
SLOW_FLOW = chain(node("Start"), node("Sleep", "delay", ms=60_000), node("After", "set", values={}))


@pytest.fixture
async def app_client(settings: Settings) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    async with running_app(settings) as pair:
        yield pair


async def finished_log(
    client: httpx.AsyncClient, body: dict[str, Any], **run_body: Any
) -> list[dict[str, Any]]:
    """Run ``body`` to its end and return its stored log."""
    execution_id = await run(client, await create_workflow(client, body), **run_body)
    await wait_for_status(client, execution_id, "success", "error", "canceled", "crashed")
    return await logged_messages(client, execution_id)


def sequence_numbers(messages: list[dict[str, Any]]) -> list[int]:
    return [m["data"]["sequenceNumber"] for m in messages if "sequenceNumber" in m["data"]]


def runtime_of(app: Starlette) -> Runtime:
    return cast(Runtime, app.state.runtime)


def finished_statuses(messages: list[dict[str, Any]]) -> list[str]:
    return [m["data"]["status"] for m in messages if m["type"] == "executionFinished"]


# ---- case 1: success ---------------------------------------------------------------------


async def test_a_successful_chain_logs_started_then_each_node_triple_then_finished(
    client: httpx.AsyncClient,
) -> None:
    messages = await finished_log(client, SUCCESS_FLOW)

    assert kinds(messages) == [
        ("executionStarted", None),
        *node_triples("Start", "B", "C"),
        ("executionFinished", None),
    ]
    assert messages[-1]["data"]["status"] == "success"
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    assert sequence_numbers(messages) == list(range(6))
    assert [m["data"]["data"]["executionIndex"] for m in messages[1:-1]] == [
        i for i in range(3) for _ in NODE_EVENTS
    ]


async def test_a_successful_run_has_the_shape_of_n8ns_messages(client: httpx.AsyncClient) -> None:
    messages = await finished_log(client, SUCCESS_FLOW)
    captured = reference("success-trigger-set-set.jsonl")

    assert [m["type"] for m in messages] == [m["type"] for m in captured]
    for ours, theirs in zip(messages, captured, strict=True):
        ours = {"type": ours["type"], "data": ours["data"]}
        assert shape(ours) == shape(theirs), ours["type"]
        assert null_paths(ours) == []
        assert isinstance(ours["data"]["graph_state"]["nodes"], dict), ours["type"]
    started = messages[0]["data"]
    assert started["flattedRunData"] == "[{}]"
    assert started["startedAt"].endswith("Z") and started["mode"] == "manual"
    assert started["workflowName"] == "push-success"


async def test_each_node_names_the_node_and_output_it_came_from(client: httpx.AsyncClient) -> None:
    messages = await finished_log(client, SUCCESS_FLOW)
    befores = {m["data"]["nodeName"]: m["data"]["data"] for m in messages[1:-1:3]}

    assert befores["Start"]["source"] == [] and befores["Start"]["hints"] == []
    assert befores["B"]["source"] == [
        {"previousNode": "Start", "previousNodeOutput": 0, "previousNodeRun": 0}
    ]
    assert befores["C"]["source"][0]["previousNode"] == "B"
    after_data = [m["data"] for m in messages if m["type"] == "nodeExecuteAfterData"]
    assert after_data[-1]["data"]["data"] == {
        "main": [[{"json": {"b": "hello", "c": "world"}, "pairedItem": {"item": 0}}]]
    }
    assert all(m["itemCountByConnectionType"] == {"main": [1]} for m in after_data)


async def test_the_graph_state_of_each_message_follows_the_run(client: httpx.AsyncClient) -> None:
    messages = await finished_log(client, SUCCESS_FLOW)
    states = [m["data"]["graph_state"] for m in messages]

    assert states[0]["completed_nodes"] == [] and states[0]["nodes"]["B"]["status"] == "pending"
    before_b = states[4]
    assert before_b["running_nodes"] == ["B"] and before_b["nodes"]["B"]["status"] == "running"
    assert states[5]["nodes"]["B"]["status"] == "success"
    assert states[-1]["completed_nodes"] == ["Start", "B", "C"]
    assert states[-1]["running_nodes"] == [] and states[-1]["errors"] == []


# ---- case 2: a node raises ---------------------------------------------------------------


async def test_a_failing_node_ends_the_run_with_its_error_and_later_nodes_get_nothing(
    client: httpx.AsyncClient,
) -> None:
    messages = await finished_log(client, FAILING_FLOW)

    assert kinds(messages) == [
        ("executionStarted", None),
        *node_triples("Start", "B"),
        ("executionFinished", None),
    ]
    after, after_data = messages[5]["data"], messages[6]["data"]
    assert messages[-1]["data"]["status"] == "error"
    assert after["data"]["executionStatus"] == "error"
    assert after["itemCountByConnectionType"] == {}
    assert after_data["itemCountByConnectionType"] == {}
    assert after_data["data"]["executionStatus"] == "error"
    assert after_data["data"]["error"] == after["data"]["error"]
    assert null_paths(messages) == []


async def test_a_node_error_has_the_shape_of_n8ns_node_operation_error(
    client: httpx.AsyncClient,
) -> None:
    messages = await finished_log(client, FAILING_FLOW)
    error = messages[5]["data"]["data"]["error"]
    captured = reference("error-stop-and-error.jsonl")
    theirs = next(
        m for m in captured if m["type"] == "nodeExecuteAfter" and "error" in m["data"]["data"]
    )

    assert set(theirs["data"]["data"]["error"]) <= set(error)
    assert error["name"] == "NodeOperationError"
    assert error["message"] == "boom from B"
    assert error["description"] == "B always fails"
    assert error["level"] == "error"
    assert isinstance(error["shouldReport"], bool)
    assert isinstance(error["tags"], dict) and isinstance(error["context"], dict)
    assert error["functionality"] == "regular"
    assert isinstance(error["timestamp"], int)
    assert error["timestamp"] >= messages[4]["data"]["data"]["startTime"]
    inode = error["node"]
    assert set(inode) == {"id", "name", "type", "typeVersion", "position", "parameters"}
    assert (inode["name"], inode["type"], inode["typeVersion"]) == ("B", "fail", 1)
    assert inode["parameters"] == {"message": "boom from B", "description": "B always fails"}
    assert len(inode["position"]) == 2


async def test_an_error_without_description_omits_it(client: httpx.AsyncClient) -> None:
    messages = await finished_log(client, chain(node("Start"), node("B", "fail", message="x")))
    error = messages[5]["data"]["data"]["error"]

    assert "description" not in error
    assert error["message"] == "x"


async def test_a_failed_run_reports_the_failing_node_over_rest(client: httpx.AsyncClient) -> None:
    execution_id = await run(client, await create_workflow(client, FAILING_FLOW))
    body = await wait_for_status(client, execution_id, "error")

    assert body["error"] == {"message": "boom from B", "node": "B", "type": "NodeOperationError"}
    assert body["summary"]["nodes_failed"] == 1
    assert body["summary"]["last_node_executed"] == "B"
    assert "C" not in body["run_data_meta"]
    assert body["graph_state"]["nodes"]["C"]["status"] == "pending"


# ---- case 3: parallel branches -----------------------------------------------------------

PARALLEL_FLOW = workflow(
    [
        node("Start"),
        node("Slow", "delay", ms=30),
        node("Fast", "set", values={"fast": 1}),
        node("Join", "merge"),
        node("End", "set", values={"end": 1}),
    ],
    [
        ("Start", 0, "Slow"),
        ("Start", 0, "Fast"),
        ("Slow", 0, "Join"),
        ("Fast", 0, "Join"),
        ("Join", 0, "End"),
    ],
)


async def test_parallel_branches_keep_each_nodes_triple_in_order_and_merge_once(
    client: httpx.AsyncClient,
) -> None:
    messages = await finished_log(client, PARALLEL_FLOW)
    seen = kinds(messages)

    assert seen[0] == ("executionStarted", None)
    assert seen[-1] == ("executionFinished", None) and messages[-1]["data"]["status"] == "success"
    for name in ("Start", "Slow", "Fast", "Join", "End"):
        own = [kind for kind, n in seen if n == name]
        assert own == list(NODE_EVENTS), (name, seen)
    position = {(kind, n): i for i, (kind, n) in enumerate(seen)}
    for branch in ("Slow", "Fast"):
        assert position[("nodeExecuteAfter", branch)] < position[("nodeExecuteBefore", "Join")]
    assert position[("nodeExecuteAfter", "Join")] < position[("nodeExecuteBefore", "End")]
    assert sorted(sequence_numbers(messages)) == list(range(10))
    assert len(set(sequence_numbers(messages))) == 10


async def test_a_failing_branch_ends_the_run_and_stops_its_running_sibling(
    client: httpx.AsyncClient,
) -> None:
    body = workflow(
        [node("Start"), node("Slow", "delay", ms=60_000), node("Boom", "fail", message="x")],
        [("Start", 0, "Slow"), ("Start", 0, "Boom")],
    )
    began = time.monotonic()

    messages = await finished_log(client, body)

    assert time.monotonic() - began < 5
    assert messages[-1]["data"]["status"] == "error"
    assert ("nodeExecuteAfter", "Slow") not in kinds(messages)
    final = messages[-1]["data"]["graph_state"]
    assert final["running_nodes"] == []
    assert final["nodes"]["Slow"]["status"] == "canceled"
    assert final["nodes"]["Boom"]["status"] == "error"


async def test_a_merge_names_every_input_as_its_source(client: httpx.AsyncClient) -> None:
    messages = await finished_log(client, PARALLEL_FLOW)
    join = next(m for m in messages if kinds([m]) == [("nodeExecuteBefore", "Join")])
    sources = join["data"]["data"]["source"]

    assert sorted(s["previousNode"] for s in sources) == ["Fast", "Slow"]
    done = next(
        m
        for m in messages
        if m["type"] == "nodeExecuteAfterData" and m["data"]["nodeName"] == "Join"
    )
    assert done["data"]["data"]["data"]["main"][0][0]["json"] == {"fast": 1}


async def test_an_if_that_takes_its_second_output_counts_items_on_it(
    client: httpx.AsyncClient,
) -> None:
    body = workflow(
        [
            node("Start"),
            node("Check", "if", field="topic", op="eq", value="billing"),
            node("Yes", "set", values={"yes": 1}),
            node("No", "set", values={"no": 1}),
        ],
        [("Start", 0, "Check"), ("Check", 0, "Yes"), ("Check", 1, "No")],
    )
    messages = await finished_log(client, body, input={"topic": "sales"})
    check = [m["data"] for m in messages if m["data"].get("nodeName") == "Check"]
    no = next(m["data"] for m in messages if m["data"].get("nodeName") == "No")

    assert [c["itemCountByConnectionType"] for c in check[1:]] == [{"main": [0, 1]}] * 2
    assert check[2]["data"]["data"]["main"][0] == []
    assert check[2]["data"]["data"]["main"][1][0]["json"] == {"topic": "sales"}
    assert no["data"]["source"] == [
        {"previousNode": "Check", "previousNodeOutput": 1, "previousNodeRun": 0}
    ]
    assert "Yes" not in {name for _, name in kinds(messages)}


# ---- case 4: cancel ----------------------------------------------------------------------


async def test_cancelling_a_running_delay_ends_the_run_canceled_within_a_second(
    client: httpx.AsyncClient,
) -> None:
    execution_id = await run(client, await create_workflow(client, SLOW_FLOW))
    await wait_for_log(client, execution_id, "nodeExecuteBefore", "Sleep")

    began = time.monotonic()
    response = await client.post(f"/agents/executions/{execution_id}/cancel")
    assert response.status_code == 202, response.text
    assert response.json()["execution_id"] == execution_id
    body = await wait_for_status(client, execution_id, "canceled", within=1)
    assert time.monotonic() - began < 1

    messages = await logged_messages(client, execution_id)
    assert finished_statuses(messages) == ["canceled"]
    assert messages[-1]["type"] == "executionFinished"
    assert ("nodeExecuteBefore", "After") not in kinds(messages)
    assert body["graph_state"]["nodes"]["Sleep"]["status"] == "canceled"
    assert body["stopped_at"] is not None


async def test_cancelling_a_queued_run_logs_exactly_one_canceled_finish(
    settings: Settings,
) -> None:
    async with running_app(msgspec.structs.replace(settings, workers=0)) as (_, client):
        execution_id = await run(client, await create_workflow(client, SUCCESS_FLOW))
        assert (await client.get(f"/agents/executions/{execution_id}")).json()["status"] == "new"

        response = await client.post(f"/agents/executions/{execution_id}/cancel")

        assert response.status_code == 202, response.text
        await wait_for_status(client, execution_id, "canceled", within=1)
        messages = await logged_messages(client, execution_id)
        assert kinds(messages) == [("executionFinished", None)]
        assert finished_statuses(messages) == ["canceled"]


async def test_a_run_cancelled_while_queued_never_starts(settings: Settings) -> None:
    async with running_app(settings) as (app, client):
        service = runtime_of(app).service
        workflow_id = await create_workflow(client, SLOW_FLOW)
        first = await run(client, workflow_id)
        await wait_for_log(client, first, "nodeExecuteBefore", "Sleep")
        queued = await run(client, workflow_id)
        assert (await client.post(f"/agents/executions/{queued}/cancel")).status_code == 202
        assert (await client.post(f"/agents/executions/{first}/cancel")).status_code == 202
        await wait_for_status(client, first, "canceled")
        await service.manager.drain()

        messages = await logged_messages(client, queued)
        assert kinds(messages) == [("executionFinished", None)]
        assert (await client.get(f"/agents/executions/{queued}")).json()["status"] == "canceled"


async def test_cancelling_a_waiting_run_logs_exactly_one_canceled_finish(
    client: httpx.AsyncClient,
) -> None:
    execution_id = await run(client, await create_workflow(client, WAITING_FLOW))
    await wait_for_status(client, execution_id, "waiting")

    response = await client.post(f"/agents/executions/{execution_id}/cancel")

    assert response.status_code == 202, response.text
    body = await wait_for_status(client, execution_id, "canceled", within=1)
    messages = await logged_messages(client, execution_id)
    assert finished_statuses(messages) == ["canceled"]
    assert messages[-1]["type"] == "executionFinished"
    assert body["graph_state"]["nodes"]["Approve"]["status"] == "canceled"
    resumed = await client.post(f"/agents/executions/{execution_id}/resume", json={})
    assert resumed.status_code == 409


async def test_cancelling_a_finished_run_is_a_conflict(client: httpx.AsyncClient) -> None:
    execution_id = await run(client, await create_workflow(client, SUCCESS_FLOW))
    await wait_for_status(client, execution_id, "success")

    response = await client.post(f"/agents/executions/{execution_id}/cancel")

    assert response.status_code == 409
    assert error_body(response)["code"] == "illegal_transition"
    messages = await logged_messages(client, execution_id)
    assert finished_statuses(messages) == ["success"]


async def test_cancelling_an_unknown_run_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.post("/agents/executions/nope/cancel")

    assert response.status_code == 404
    assert error_body(response)["code"] == "not_found"


# ---- case 5: wait and resume -------------------------------------------------------------


async def test_a_wait_node_logs_its_triple_as_waiting_then_execution_waiting(
    client: httpx.AsyncClient,
) -> None:
    execution_id = await run(client, await create_workflow(client, WAITING_FLOW))
    messages = await wait_for_log(client, execution_id, "executionWaiting")
    status = (await client.get(f"/agents/executions/{execution_id}")).json()["status"]

    assert status == "waiting"
    assert kinds(messages) == [
        ("executionStarted", None),
        *node_triples("Start", "Approve"),
        ("executionWaiting", None),
    ]
    assert [m["data"]["data"]["executionStatus"] for m in messages[5:7]] == ["waiting"] * 2
    assert messages[-1]["data"]["executionId"] == execution_id
    assert messages[-1]["data"]["graph_state"]["nodes"]["Approve"]["status"] == "waiting"


async def test_resume_continues_with_the_next_node_and_keeps_counting(
    client: httpx.AsyncClient,
) -> None:
    execution_id = await run(client, await create_workflow(client, WAITING_FLOW))
    await wait_for_status(client, execution_id, "waiting")

    response = await client.post(
        f"/agents/executions/{execution_id}/resume", json={"value": {"approved": True}}
    )

    assert response.status_code == 202, response.text
    assert response.json()["execution_id"] == execution_id
    body = await wait_for_status(client, execution_id, "success")
    messages = await logged_messages(client, execution_id)
    assert kinds(messages) == [
        ("executionStarted", None),
        *node_triples("Start", "Approve"),
        ("executionWaiting", None),
        *node_triples("Done"),
        ("executionFinished", None),
    ]
    assert messages[-1]["data"]["status"] == "success"
    assert sequence_numbers(messages) == list(range(6))
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    done = messages[-2]["data"]["data"]
    assert done["data"]["main"][0][0]["json"] == {"approved": True, "done": True}
    assert done["source"] == [
        {"previousNode": "Approve", "previousNodeOutput": 0, "previousNodeRun": 0}
    ]
    assert body["graph_state"]["completed_nodes"] == ["Start", "Approve", "Done"]
    assert [r["status"] for r in body["run_data_meta"]["Approve"]] == ["success"]


@pytest.mark.parametrize(
    ("body", "merged"),
    [
        (None, {"value": None}),
        ({"value": {}}, {}),
        ({"value": "yes"}, {"value": "yes"}),
        (
            {"value": {"0123456789abcdef0123456789abcdef": 1}},
            {"0123456789abcdef0123456789abcdef": 1},
        ),
    ],
    ids=["no-body", "empty-object", "text", "object-keyed-like-interrupt-ids"],
)
async def test_resume_hands_any_value_to_the_wait_node(
    client: httpx.AsyncClient, body: dict[str, Any] | None, merged: dict[str, Any]
) -> None:
    execution_id = await run(client, await create_workflow(client, WAITING_FLOW))
    await wait_for_status(client, execution_id, "waiting")

    response = await client.post(f"/agents/executions/{execution_id}/resume", json=body)

    assert response.status_code == 202, response.text
    await wait_for_status(client, execution_id, "success")
    messages = await logged_messages(client, execution_id)
    assert messages[-2]["data"]["data"]["data"]["main"][0][0]["json"] == {**merged, "done": True}


async def test_resuming_a_run_that_is_not_waiting_is_a_conflict(
    client: httpx.AsyncClient,
) -> None:
    execution_id = await run(client, await create_workflow(client, SUCCESS_FLOW))
    await wait_for_status(client, execution_id, "success")

    response = await client.post(f"/agents/executions/{execution_id}/resume", json={"value": 1})

    assert response.status_code == 409
    assert error_body(response)["code"] in ("conflict", "illegal_transition")


# ---- rule 6: waiting and finished are durable before they are published -------------------


async def test_waiting_and_finished_are_stored_before_they_are_published(
    app_client: tuple[Starlette, httpx.AsyncClient], settings: Settings
) -> None:
    app, client = app_client
    seen: list[tuple[str, str]] = []
    reader = sqlite3.connect(settings.sqlite_path)

    def on_event(event: PushEvent) -> None:
        if event.type in ("executionWaiting", "executionFinished"):
            row = reader.execute(
                "SELECT status FROM executions WHERE id=?", (event.execution_id,)
            ).fetchone()
            seen.append((event.type, row[0]))

    unsubscribe = runtime_of(app).bus.subscribe(on_event)
    try:
        execution_id = await run(client, await create_workflow(client, WAITING_FLOW))
        await wait_for_status(client, execution_id, "waiting")
        await wait_for_log(client, execution_id, "executionWaiting")
        await client.post(f"/agents/executions/{execution_id}/resume", json={})
        await wait_for_status(client, execution_id, "success")
        await runtime_of(app).service.manager.drain()
    finally:
        unsubscribe()
        reader.close()

    assert seen == [("executionWaiting", "waiting"), ("executionFinished", "success")]


async def test_a_run_read_while_it_runs_is_a_copy_its_worker_leaves_alone(
    settings: Settings,
) -> None:
    async with running_app(settings) as (app, client):
        service = runtime_of(app).service
        execution_id = await run(client, await create_workflow(client, SLOW_FLOW))
        await wait_for_log(client, execution_id, "nodeExecuteBefore", "Sleep")
        seen = await service.get_execution(execution_id)
        assert seen.status == "running"

        assert (await client.post(f"/agents/executions/{execution_id}/cancel")).status_code == 202
        await wait_for_status(client, execution_id, "canceled")

        assert seen.status == "running" and seen.stopped_at is None
        assert (await service.get_execution(execution_id)).status == "canceled"
