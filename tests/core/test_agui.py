"""AG-UI projection (SPEC §11): push messages in, AG-UI events out, each one valid by the
``ag-ui-protocol`` models; the run input taken from a ``RunAgentInput``."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from ag_ui.core import Event
from pydantic import TypeAdapter

from app import messages as m
from app.errors import BadRequest, ValidationFailed
from app.push.agui import AguiRun, parse_input, run_input
from app.push.wire import Outgoing
from support.push import after, before, finished, started, waiting

EVENTS: TypeAdapter[Any] = TypeAdapter(Event)
SNAPSHOT = {"type": "executionSnapshot", "data": {"executionId": "e1", "status": "new"}}


def wire(message: m.ExecutionMessage) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.json.decode(m.encode(message))
    return out


def stream(node: str, *chunks: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "nodeExecuteStream",
        "data": {"executionId": "e1", "nodeName": node, "chunks": list(chunks)},
    }


def project(*messages: dict[str, Any]) -> list[dict[str, Any]]:
    """The events as sent (camelCase JSON), each checked against the protocol's models."""
    run = AguiRun("thread-1", "run-1")
    sent = [e.model_dump(mode="json", by_alias=True) for msg in messages for e in run.project(msg)]
    for event in sent:
        EVENTS.validate_python(event)
    return sent


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] + (f" {e['stepName']}" if "stepName" in e else "") for e in events]


def test_a_run_becomes_run_steps_and_state_snapshots() -> None:
    state = {"nodes": {"A": {"status": "success"}}, "completed_nodes": ["A"]}
    events = project(
        SNAPSHOT,
        wire(started("e1")),
        wire(before("e1", "A", 0)),
        wire(after("e1", "A", 1)),
        wire(finished("e1", graph_state=state)),
    )
    assert kinds(events) == [
        "RUN_STARTED",
        "STEP_STARTED A",
        "STEP_FINISHED A",
        "STATE_SNAPSHOT",
        "RUN_FINISHED",
    ]
    assert events[0] == {
        "type": "RUN_STARTED",
        "threadId": "thread-1",
        "runId": "run-1",
        "metadata": {"executionId": "e1"},
    }
    assert events[3] == {"type": "STATE_SNAPSHOT", "snapshot": state}
    assert events[4] == {"type": "RUN_FINISHED", "threadId": "thread-1", "runId": "run-1"}


def test_stream_chunks_become_text_tool_call_and_custom_events() -> None:
    events = project(
        SNAPSHOT,
        wire(before("e1", "Agent", 0)),
        stream(
            "Agent",
            {"kind": "text", "messageId": "m1", "text": "Hello"},
            {
                "kind": "tool_call",
                "messageId": "m1",
                "index": 0,
                "id": "c1",
                "name": "search",
                "args": '{"q":',
            },
        ),
        stream(
            "Agent",
            {"kind": "text", "messageId": "m1", "text": " world"},
            {"kind": "tool_call", "messageId": "m1", "index": 0, "args": '"x"}'},
            {"kind": "custom", "data": {"progress": 0.5}},
        ),
        wire(after("e1", "Agent", 1)),
        wire(finished("e1")),
    )
    assert events[1:] == [
        {"type": "STEP_STARTED", "stepName": "Agent"},
        {"type": "TEXT_MESSAGE_START", "messageId": "m1", "role": "assistant"},
        {"type": "TEXT_MESSAGE_CONTENT", "messageId": "m1", "delta": "Hello"},
        {
            "type": "TOOL_CALL_START",
            "toolCallId": "c1",
            "toolCallName": "search",
            "parentMessageId": "m1",
        },
        {"type": "TOOL_CALL_ARGS", "toolCallId": "c1", "delta": '{"q":'},
        {"type": "TEXT_MESSAGE_CONTENT", "messageId": "m1", "delta": " world"},
        {"type": "TOOL_CALL_ARGS", "toolCallId": "c1", "delta": '"x"}'},
        {"type": "CUSTOM", "name": "Agent", "value": {"progress": 0.5}},
        {"type": "TEXT_MESSAGE_END", "messageId": "m1"},
        {"type": "TOOL_CALL_END", "toolCallId": "c1"},
        {"type": "STEP_FINISHED", "stepName": "Agent"},
        {"type": "RUN_FINISHED", "threadId": "thread-1", "runId": "run-1"},
    ]


def test_a_waiting_run_finishes_with_an_interrupt_and_nothing_follows() -> None:
    events = project(
        SNAPSHOT,
        wire(before("e1", "Approve", 0)),
        wire(waiting("e1")),
        wire(before("e1", "Done", 2)),
    )
    assert kinds(events) == [
        "RUN_STARTED",
        "STEP_STARTED Approve",
        "STEP_FINISHED Approve",
        "RUN_FINISHED",
    ]
    assert events[-1]["outcome"] == {
        "type": "interrupt",
        "interrupts": [
            {
                "id": "e1",
                "reason": "waiting",
                "message": "resume with POST /agents/executions/e1/resume",
            }
        ],
    }


@pytest.mark.parametrize(
    ("status", "last"),
    [
        (
            "canceled",
            {
                "type": "RUN_FINISHED",
                "threadId": "thread-1",
                "runId": "run-1",
                "outcome": {"type": "cancelled"},
            },
        ),
        ("error", {"type": "RUN_ERROR", "message": "boom", "code": "error"}),
        ("crashed", {"type": "RUN_ERROR", "message": "the run ended crashed", "code": "crashed"}),
    ],
)
def test_a_run_that_did_not_succeed_ends_open_steps_then_the_run(
    status: str, last: dict[str, Any]
) -> None:
    errors = [{"node": "A", "message": "boom", "type": "NodeFailure"}] if status == "error" else []
    state = {"nodes": {}, "errors": errors}
    events = project(
        SNAPSHOT, wire(before("e1", "A", 0)), wire(finished("e1", status, graph_state=state))
    )
    assert kinds(events) == [
        "RUN_STARTED",
        "STEP_STARTED A",
        "STEP_FINISHED A",
        "STATE_SNAPSHOT",
        last["type"],
    ]
    assert events[-1] == last


def test_encode_lays_out_server_sent_events_with_the_protocols_encoder() -> None:
    run = AguiRun("t", "r")
    batch = [Outgoing(msgspec.json.encode(SNAPSHOT)), Outgoing(m.encode(before("e1", "A", 0)))]
    assert run.encode(batch) == (
        b'data: {"type":"RUN_STARTED","metadata":{"executionId":"e1"},'
        b'"threadId":"t","runId":"r"}\n\n'
        b'data: {"type":"STEP_STARTED","stepName":"A"}\n\n'
    )


def test_run_input_is_the_state_with_the_chat_history_under_messages() -> None:
    body = {
        "threadId": "t",
        "runId": "r",
        "state": {"topic": "x"},
        "messages": [{"id": "u1", "role": "user", "content": "hi"}],
    }
    agent_input = parse_input(msgspec.json.encode(body))
    assert run_input(agent_input) == {
        "topic": "x",
        "messages": [{"id": "u1", "role": "user", "content": "hi"}],
    }


def test_bad_inputs_are_400_or_422_naming_each_problem() -> None:
    with pytest.raises(BadRequest):
        parse_input(b"{nope")
    with pytest.raises(ValidationFailed) as missing:
        parse_input(b'{"threadId": "t", "messages": [{"id": "u1", "role": "robot"}]}')
    assert [p["path"] for p in missing.value.details] == ["runId", "messages[0]"]
    with pytest.raises(ValidationFailed) as state:
        parse_input(b'{"threadId": "t", "runId": "r", "messages": [], "state": [1]}')
    assert state.value.details == [{"path": "state", "message": "expected an object"}]
