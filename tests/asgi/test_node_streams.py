"""Streams inside a node through the real app (SPEC §8): the llm node, a python node's custom
progress and a chat model inside a registered graph, read back from the stored log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypedDict

import httpx
import msgspec
import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, MessagesState, StateGraph

from app.executions.service import ExecutionService
from app.settings import Settings
from app.workflows import llm_node
from app.workflows.fake_chat import FakeChat
from support.app import create_workflow, logged_messages, run, running_app, wait_for_status
from support.engine import chain, error_body, node, wait_for_log

pytestmark = pytest.mark.timeout(30)

WORDS = [f"word{i}" for i in range(200)]
ANSWER = " ".join(WORDS)


class Chat(TypedDict, total=False):
    question: str
    reply: str


async def ask(state: Chat) -> dict[str, Any]:
    get_stream_writer()({"thinking": state["question"]})
    model = FakeChat(response="Graphs stream too.")
    answer = await model.ainvoke([HumanMessage(state["question"])])
    return {"reply": answer.text}


async def chat(state: MessagesState) -> dict[str, Any]:
    model = FakeChat(response="Hello from a chat graph.")
    return {"messages": [await model.ainvoke(state["messages"])]}


def register(service: ExecutionService) -> None:
    builder = StateGraph(Chat)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    service.register_graph("chat", builder.compile(), name="Chat")
    conversation = StateGraph(MessagesState)
    conversation.add_node("chat", chat)
    conversation.add_edge(START, "chat")
    conversation.add_edge("chat", END)
    service.register_graph("messages", conversation.compile(), name="Messages")


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings, setup=register) as (_, client):
        yield client


async def finished_log(client: httpx.AsyncClient, workflow: dict[str, Any], **body: Any) -> Any:
    execution_id = await run(client, await create_workflow(client, workflow), **body)
    record = await wait_for_status(client, execution_id, "success", "error")
    return record, await logged_messages(client, execution_id)


def between_before_and_after(messages: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The node's stream messages, checked to lie between its before and its after."""
    own = [m for m in messages if m["data"].get("nodeName") == name]
    types = [m["type"] for m in own]
    assert types[0] == "nodeExecuteBefore"
    assert types[-2:] == ["nodeExecuteAfter", "nodeExecuteAfterData"]
    assert set(types[1:-2]) == {"nodeExecuteStream"}
    streams = own[1:-2]
    for message in streams:
        assert set(message) == {"type", "data", "seq"}
        assert set(message["data"]) == {"executionId", "nodeName", "chunks"}  # no graph_state
    return streams


def chunks_of(streams: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [chunk for message in streams for chunk in message["data"]["chunks"]]


def output_of(messages: list[dict[str, Any]], name: str) -> dict[str, Any]:
    after = next(
        m for m in messages if m["type"] == "nodeExecuteAfterData" and m["data"]["nodeName"] == name
    )
    output: dict[str, Any] = after["data"]["data"]["data"]["main"][0][0]["json"]
    return output


async def test_llm_tokens_stream_between_before_and_after_and_add_up_to_the_output(
    client: httpx.AsyncClient,
) -> None:
    flow = chain(
        node("Start"),
        node("Ask", "llm", model="fake", prompt="ignored", response=ANSWER),
        node("File", "set", values={"filed": True}),
    )
    record, messages = await finished_log(client, flow)
    assert record["status"] == "success"
    streams = between_before_and_after(messages, "Ask")
    output = output_of(messages, "Ask")
    chunks = chunks_of(streams)
    assert {c["kind"] for c in chunks} == {"text"}
    assert {c["messageId"] for c in chunks} == {output["messageId"]}
    assert "".join(c["text"] for c in chunks) == output["text"] == ANSWER
    assert len(streams) < len(WORDS)  # coalesced: the log grows by flushes, not by tokens
    assert output["usage"]["output_tokens"] == len(WORDS)
    assert record["streams"] == {}


async def test_the_prompt_is_rendered_from_the_input_and_earlier_results(
    client: httpx.AsyncClient,
) -> None:
    flow = chain(
        node("Start"),
        node("Tag", "set", values={"team": "billing", "more": {"n": 2}}),
        node("Ask", "llm", model="fake", prompt="{input.topic} for {results.Tag.team} {x.y}"),
    )
    _, messages = await finished_log(client, flow, input={"topic": "refunds"})
    assert output_of(messages, "Ask")["text"] == "refunds for billing {x.y}"


async def test_python_custom_progress_streams_verbatim_in_order(client: httpx.AsyncClient) -> None:
    flow = chain(
        node("Start"),
        node("Research", "python", function="app.workflows.example_functions:research"),
    )
    _, messages = await finished_log(client, flow, input={"steps": 4, "delay_ms": 1})
    chunks = chunks_of(between_before_and_after(messages, "Research"))
    assert chunks == [
        {"kind": "custom", "data": {"step": i, "of": 4, "note": f"looked into part {i} of 4"}}
        for i in range(1, 5)
    ]


async def test_a_synchronous_python_node_streams_from_its_worker_thread(settings: Settings) -> None:
    allowed = (*settings.python_modules, "support.stream_functions")
    with_module = msgspec.structs.replace(settings, python_modules=allowed)
    flow = chain(
        node("Start"),
        node("Work", "python", function="support.stream_functions:progress_in_a_thread"),
    )
    async with running_app(with_module) as (_, client):
        _, messages = await finished_log(client, flow)
    chunks = chunks_of(between_before_and_after(messages, "Work"))
    assert chunks == [{"kind": "custom", "data": {"step": i, "thread": True}} for i in range(3)]


async def test_a_flush_over_the_size_limit_reaches_the_log_in_messages_under_it(
    settings: Settings,
) -> None:
    limit = 4_096
    small = msgspec.structs.replace(settings, max_message_bytes=limit)
    answer = " ".join(f"w{i}" for i in range(3_000))  # ~18 kB in one burst: one flush
    flow = chain(node("Start"), node("Ask", "llm", model="fake", prompt="p", response=answer))
    async with running_app(small) as (_, client):
        _, messages = await finished_log(client, flow)
    streams = between_before_and_after(messages, "Ask")
    assert len(streams) > 4
    sizes = [len(msgspec.json.encode({"type": m["type"], "data": m["data"]})) for m in streams]
    assert max(sizes) <= limit
    assert "".join(c["text"] for c in chunks_of(streams)) == answer


async def test_a_chat_model_inside_a_registered_graph_streams_without_graphpush_code(
    client: httpx.AsyncClient,
) -> None:
    execution_id = await run(client, "chat", input={"question": "do graphs stream?"})
    await wait_for_status(client, execution_id, "success")
    messages = await logged_messages(client, execution_id)
    chunks = chunks_of(between_before_and_after(messages, "ask"))
    assert chunks[0] == {"kind": "custom", "data": {"thinking": "do graphs stream?"}}
    assert "".join(c["text"] for c in chunks if c["kind"] == "text") == "Graphs stream too."


async def test_a_graph_s_chat_messages_are_json_in_its_output_and_match_their_stream(
    client: httpx.AsyncClient,
) -> None:
    execution_id = await run(
        client, "messages", input={"messages": [{"role": "user", "content": "hi"}]}
    )
    await wait_for_status(client, execution_id, "success")
    messages = await logged_messages(client, execution_id)
    chunks = chunks_of(between_before_and_after(messages, "chat"))
    [answer] = output_of(messages, "chat")["messages"]
    assert answer["type"] == "ai" and answer["id"] == chunks[0]["messageId"]
    assert "".join(c["text"] for c in chunks) == answer["content"] == "Hello from a chat graph."


async def test_a_running_node_shows_its_text_so_far_in_the_execution(
    client: httpx.AsyncClient,
) -> None:
    flow = chain(
        node("Start"),
        node("Ask", "llm", model="fake", prompt="p", response=ANSWER, delay_ms=20),
    )
    execution_id = await run(client, await create_workflow(client, flow))
    await wait_for_log(client, execution_id, "nodeExecuteStream", "Ask")
    body = (await client.get(f"/agents/executions/{execution_id}")).json()
    assert body["status"] == "running"
    assert list(body["streams"]) == ["Ask"]
    [(message_id, so_far)] = body["streams"]["Ask"].items()
    assert so_far and ANSWER.startswith(so_far)
    await client.post(f"/agents/executions/{execution_id}/cancel")
    final = await wait_for_status(client, execution_id, "canceled")
    assert final["streams"] == {}
    assert message_id.startswith("lc_run")


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("gpt-4o", "expected 'fake' or '<provider>:<model>'"),
        ("nosuchprovider:model-1", "provider"),
        ("openai:gpt-4o", "openai"),
    ],
)
async def test_an_llm_model_that_cannot_be_used_is_a_422_naming_the_field(
    client: httpx.AsyncClient, model: str, says: str
) -> None:
    flow = chain(node("Start"), node("Ask", "llm", model=model, prompt="hi"))
    response = await client.post("/agents/workflows", json=flow)
    assert response.status_code == 422
    details = error_body(response)["details"]
    assert [d["path"] for d in details] == ["nodes[1].parameters.model"]
    assert says in details[0]["message"]


class Unavailable(FakeChat):
    """A provider whose API answers with an error (the network boundary, not graphpush)."""

    async def _astream(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("provider said 529 overloaded")
        yield  # an async generator, as a provider's stream is


async def test_a_provider_error_fails_the_node_with_n8ns_error_shape(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(llm_node, "unusable_model", lambda model: None)
    monkeypatch.setattr(llm_node, "_provider_model", lambda model: Unavailable())
    flow = chain(node("Start"), node("Ask", "llm", model="acme:large", prompt="hi"))
    record, messages = await finished_log(client, flow)
    assert record["status"] == "error"
    after = next(
        m for m in messages if m["type"] == "nodeExecuteAfter" and m["data"]["nodeName"] == "Ask"
    )
    error = after["data"]["data"]["error"]
    assert error["name"] == "NodeOperationError"
    assert error["message"] == "provider said 529 overloaded"
    assert error["node"]["type"] == "llm"


def test_the_fake_model_answers_without_streaming_too() -> None:
    answer = FakeChat(response=" two  words ").invoke([HumanMessage("x")])
    assert isinstance(answer, AIMessage)
    assert answer.text == " two  words "
