"""A plain LangGraph graph registered from Python runs over REST and reports its nodes with
the same push messages as a built-in workflow (SPEC §2, §6)."""

from __future__ import annotations

import operator
from collections.abc import AsyncIterator
from typing import Annotated, Any, TypedDict

import httpx
import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from app.executions.service import ExecutionService
from app.settings import Settings
from support.app import create_workflow, logged_messages, run, running_app, wait_for_status
from support.engine import chain, kinds, node, node_triples, null_paths, shape

pytestmark = pytest.mark.timeout(30)


class Research(TypedDict, total=False):
    question: str
    notes: Annotated[list[str], operator.add]
    answer: str


def fetch(state: Research) -> dict[str, Any]:
    return {"notes": [f"looked up {state['question']}"]}


async def think(state: Research) -> dict[str, Any]:
    if state["question"] == "explode":
        raise ValueError("cannot think about that")
    return {"notes": ["thought it over"]}


def answer(state: Research) -> dict[str, Any]:
    return {"answer": " / ".join(state["notes"])}


def research_graph() -> CompiledStateGraph[Any, Any, Any, Any]:
    builder = StateGraph(Research)
    builder.add_node("fetch", fetch)
    builder.add_node("think", think)
    builder.add_node("answer", answer)
    builder.add_edge(START, "fetch")
    builder.add_edge("fetch", "think")
    builder.add_edge("think", "answer")
    builder.add_edge("answer", END)
    return builder.compile()


def register(service: ExecutionService) -> None:
    service.register_graph("research", research_graph(), name="Research")


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings, setup=register) as (_, client):
        yield client


async def run_to_end(client: httpx.AsyncClient, workflow_id: str, **body: Any) -> Any:
    execution_id = await run(client, workflow_id, **body)
    record = await wait_for_status(client, execution_id, "success", "error")
    return record, await logged_messages(client, execution_id)


def comparable(messages: list[dict[str, Any]]) -> list[Any]:
    """Message shapes with outputs, parameters and error contexts left out."""
    opaque = frozenset({"json", "parameters", "context"})
    return [shape({"type": m["type"], "data": m["data"]}, opaque) for m in messages]


async def test_a_registered_graph_is_listed_as_a_workflow(client: httpx.AsyncClient) -> None:
    body = (await client.get("/agents/workflows/research")).json()

    assert body["name"] == "Research"
    assert [n["name"] for n in body["nodes"]] == ["fetch", "think", "answer"]
    assert body["connections"]["fetch"]["main"][0][0]["node"] == "think"
    assert "research" in [w["id"] for w in (await client.get("/agents/workflows")).json()["items"]]


async def test_a_registered_graph_gets_the_run_input_and_reports_each_node(
    client: httpx.AsyncClient,
) -> None:
    record, messages = await run_to_end(client, "research", input={"question": "tides"})

    assert record["status"] == "success"
    assert kinds(messages) == [
        ("executionStarted", None),
        *node_triples("fetch", "think", "answer"),
        ("executionFinished", None),
    ]
    last = messages[-2]["data"]["data"]["data"]["main"][0][0]["json"]
    assert last == {"answer": "looked up tides / thought it over"}
    assert [m["data"]["sequenceNumber"] for m in messages if "sequenceNumber" in m["data"]] == (
        list(range(6))
    )
    assert messages[-1]["data"]["graph_state"]["completed_nodes"] == ["fetch", "think", "answer"]
    assert record["summary"]["last_node_executed"] == "answer"


async def test_a_registered_graph_sends_the_same_shapes_as_a_built_in_workflow(
    client: httpx.AsyncClient,
) -> None:
    built_in = chain(node("A"), node("B", "set", values={"b": 1}), node("C", "set", values={}))
    _, ours = await run_to_end(client, await create_workflow(client, built_in))
    _, theirs = await run_to_end(client, "research", input={"question": "q"})

    assert comparable(theirs) == comparable(ours)
    assert null_paths(theirs) == []
    assert theirs[0]["data"]["workflowId"] == "research"
    assert theirs[0]["data"]["workflowName"] == "Research"


async def test_a_raising_node_of_a_registered_graph_sends_the_error_shapes(
    client: httpx.AsyncClient,
) -> None:
    record, messages = await run_to_end(client, "research", input={"question": "explode"})
    failing = chain(node("A"), node("B", "fail", message="no"), node("C", "set", values={}))
    _, built_in = await run_to_end(client, await create_workflow(client, failing))

    assert record["status"] == "error"
    assert kinds(messages) == [
        ("executionStarted", None),
        *node_triples("fetch", "think"),
        ("executionFinished", None),
    ]
    assert comparable(messages) == comparable(built_in)
    after = messages[5]["data"]
    assert after["itemCountByConnectionType"] == {}
    assert after["data"]["executionStatus"] == "error"
    error = after["data"]["error"]
    assert error["name"] == "NodeOperationError" and error["level"] == "error"
    assert error["message"] == "cannot think about that"
    assert error["context"] == {"exceptionType": "ValueError"}
    assert error["node"]["name"] == "think" and error["node"]["type"] == "langgraph"
    assert record["error"] == {
        "message": "cannot think about that",
        "node": "think",
        "type": "NodeOperationError",
    }
    assert messages[-1]["data"]["status"] == "error"


async def test_a_registered_graph_id_cannot_be_taken_by_a_workflow(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/agents/workflows", json={**chain(node("A")), "id": "research"})

    assert response.status_code == 409
