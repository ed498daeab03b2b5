"""Streams inside a node (SPEC §8) without a server: LangChain messages as chunks, merging,
coalescing on a clock the test moves, the size split, and the text-so-far the snapshot shows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk

from app.executions.pacing import FLUSH, paced
from app.executions.recorder import RunRecorder
from app.executions.runner import NodeStreamed, TaskFinished
from app.executions.streams import Chunk, StreamBuffers, append, message_chunks
from app.model.records import ExecutionRecord, StoredEvent
from app.workflows.node_types import NodeInfo

pytestmark = pytest.mark.timeout(10)

MID = "lc_run--1"


class Clock:
    """A clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, ms: float) -> None:
        self.now += ms / 1000


def text(value: str, message_id: str = MID) -> Chunk:
    return {"kind": "text", "messageId": message_id, "text": value}


def recorder(clock: Clock, **options: Any) -> RunRecorder:
    record = ExecutionRecord(id="e1", workflow_id="w", workflow_name="w", created_at=0)
    node = NodeInfo(id="n1", name="Ask", type="llm", position=(0, 0), parameters={})
    return RunRecorder(record, {"Ask": node}, {"Ask": []}, clock=clock, **options)


def decoded(events: list[StoredEvent]) -> list[dict[str, Any]]:
    return [json.loads(event.payload) for event in events]


def streamed_text(messages: list[dict[str, Any]]) -> str:
    return "".join(
        chunk["text"]
        for message in messages
        if message["type"] == "nodeExecuteStream"
        for chunk in message["data"]["chunks"]
        if chunk["kind"] == "text"
    )


def test_a_message_chunk_gives_its_text_and_tool_call_arguments() -> None:
    chunk = AIMessageChunk(
        content="Let me look",
        id=MID,
        tool_call_chunks=[{"name": "search", "args": '{"q": ', "id": "call_1", "index": 0}],
    )
    assert message_chunks(chunk) == [
        text("Let me look"),
        {
            "kind": "tool_call",
            "messageId": MID,
            "index": 0,
            "args": '{"q": ',
            "id": "call_1",
            "name": "search",
        },
    ]
    assert message_chunks(AIMessageChunk(content="", id=MID)) == []


def test_consecutive_chunks_of_one_message_merge_and_others_do_not() -> None:
    chunks: list[Chunk] = []
    call = {"kind": "tool_call", "messageId": MID, "index": 0, "id": "c1", "name": "f"}
    for chunk in (
        text("Hel"),
        text("lo"),
        text("!", "other"),
        {**call, "args": '{"a"'},
        {"kind": "tool_call", "messageId": MID, "index": 0, "args": ": 1}"},
        {"kind": "custom", "data": {"p": 1}},
        {"kind": "custom", "data": {"p": 2}},
    ):
        append(chunks, chunk)
    assert chunks == [
        text("Hello"),
        text("!", "other"),
        {**call, "args": '{"a": 1}'},
        {"kind": "custom", "data": {"p": 1}},
        {"kind": "custom", "data": {"p": 2}},
    ]


def test_a_buffer_is_due_at_once_after_a_quiet_spell_then_once_per_interval() -> None:
    clock = Clock()
    buffers = StreamBuffers(25, clock)
    buffers.add("t1", [text("a")])
    assert buffers.deadline() == clock.now
    assert buffers.due() == [("t1", [text("a")])]
    clock.advance(5)
    buffers.add("t1", [text("b")])
    assert buffers.deadline() == pytest.approx(clock.now + 0.020)
    clock.advance(19)
    assert buffers.due() == []
    clock.advance(1)
    assert buffers.due() == [("t1", [text("b")])]
    assert buffers.deadline() is None


def test_two_hundred_tokens_go_out_in_a_few_flushes_between_before_and_after() -> None:
    clock = Clock()
    rec = recorder(clock)
    tokens = [f" w{i}" for i in range(200)]
    events = [rec.node_started("t1", "Ask")]
    for token in tokens:
        clock.advance(1)  # a token every millisecond: 200 ms of streaming
        events += rec.streamed(NodeStreamed("t1", [text(token)]))
        deadline = rec.stream_deadline()
        if deadline is not None and deadline <= clock.now:
            events += rec.streamed(FLUSH)
    events += rec.node_finished(TaskFinished("t1", "Ask", {"text": "x"}, None))
    messages = decoded([e for e in events if e is not None])
    types = [m["type"] for m in messages]
    assert types[0] == "nodeExecuteBefore"
    assert types[-2:] == ["nodeExecuteAfter", "nodeExecuteAfterData"]
    streams = [m for m in messages if m["type"] == "nodeExecuteStream"]
    # the first token at once, then one flush per 25 ms, then the rest before the after
    assert 2 <= len(streams) <= 200 / 25 + 2
    assert streamed_text(messages) == "".join(tokens)
    assert all(len(m["data"]["chunks"]) == 1 for m in streams)  # merged per message id
    assert all("graph_state" not in m["data"] for m in streams)
    assert [e.seq for e in events if e is not None] == list(range(1, len(messages) + 1))


def test_the_record_has_the_text_so_far_of_running_nodes_only() -> None:
    clock = Clock()
    rec = recorder(clock)
    rec.node_started("t1", "Ask")
    rec.streamed(NodeStreamed("t1", [text("Hello")]))
    clock.advance(1)
    rec.streamed(NodeStreamed("t1", [text(" there")]))
    assert rec.record.streams == {"Ask": {MID: "Hello"}}  # only what was sent
    clock.advance(30)
    rec.streamed(FLUSH)
    assert rec.record.streams == {"Ask": {MID: "Hello there"}}
    rec.node_finished(TaskFinished("t1", "Ask", {}, None))
    assert rec.record.streams == {}


def test_custom_payloads_go_to_the_running_node_verbatim() -> None:
    rec = recorder(Clock())
    rec.node_started("t1", "Ask")
    payload = {"step": 1, "nested": [1, "two", None]}
    messages = decoded(rec.streamed(NodeStreamed(None, [{"kind": "custom", "data": payload}])))
    assert messages == [
        {
            "type": "nodeExecuteStream",
            "data": {
                "executionId": "e1",
                "nodeName": "Ask",
                "chunks": [{"kind": "custom", "data": payload}],
            },
        }
    ]


def test_a_flush_over_the_size_limit_is_split_and_loses_no_text() -> None:
    limit = 2_000
    rec = recorder(Clock(), max_message_bytes=limit)
    rec.node_started("t1", "Ask")
    answer = "".join(f' wörd{i} "q"' for i in range(1_000))  # ~12 kB, escapes and UTF-8
    huge = {"kind": "custom", "data": {"blob": "x" * 5_000}}
    events = rec.streamed(NodeStreamed("t1", [text(answer), huge]))
    events += rec.node_finished(TaskFinished("t1", "Ask", {}, None))
    streams = [e for e in events if e.type == "nodeExecuteStream"]
    assert len(streams) > 5
    assert all(len(e.payload) <= limit for e in streams)
    messages = decoded(streams)
    assert streamed_text(messages) == answer
    customs = [c for m in messages for c in m["data"]["chunks"] if c["kind"] == "custom"]
    assert customs == [{"kind": "custom", "data": {"__isTrimmedManualExecutionDataItem": True}}]


def test_nothing_streams_after_the_run_ends() -> None:
    rec = recorder(Clock())
    rec.node_started("t1", "Ask")
    rec.streamed(NodeStreamed("t1", [text("a")]))
    rec.streamed(NodeStreamed("t1", [text("b")]))
    finished = rec.execution_finished("canceled")
    assert json.loads(finished.payload)["type"] == "executionFinished"
    assert rec.stream_deadline() is None
    assert rec.record.streams == {}


async def test_paced_flushes_while_the_source_is_silent_and_keeps_order() -> None:
    release = asyncio.Event()
    due: list[float] = []

    async def source() -> AsyncIterator[str]:
        yield "a"
        await release.wait()
        yield "b"

    received: list[object] = []
    async for item in paced(source(), lambda: due[0] if due else None):
        received.append(item)
        if item == "a":
            due.append(asyncio.get_running_loop().time() + 0.01)
        elif item is FLUSH:
            due.clear()
            release.set()
    assert received == ["a", FLUSH, "b"]


async def test_paced_raises_the_source_error_after_its_events() -> None:
    async def source() -> AsyncIterator[str]:
        yield "a"
        raise ValueError("node failed")

    received: list[object] = []
    with pytest.raises(ValueError, match="node failed"):
        async for item in paced(source(), lambda: None):
            received.append(item)
    assert received == ["a"]


async def test_closing_paced_cancels_the_source() -> None:
    cancelled = asyncio.Event()

    async def source() -> AsyncIterator[str]:
        yield "a"
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        yield "never"

    events = paced(source(), lambda: None)
    assert await anext(events) == "a"
    await events.aclose()
    assert cancelled.is_set()
