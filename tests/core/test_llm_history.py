"""The llm node's chat history (SPEC §11): an AG-UI run's ``messages`` in the run input go
between ``system`` and ``prompt``."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from app.workflows.llm_node import LlmParams, chat_history, prompt_messages
from app.workflows.node_types import RunState

AGUI_HISTORY = [
    {"id": "s1", "role": "developer", "content": "Be brief."},
    {"id": "u1", "role": "user", "content": "Weather in Paris?"},
    {
        "id": "a1",
        "role": "assistant",
        "toolCalls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"id": "t1", "role": "tool", "content": "sunny", "toolCallId": "c1"},
    {"id": "r1", "role": "reasoning", "content": "thinking"},  # no chat model takes it
]


def test_agui_messages_become_chat_messages_in_order() -> None:
    history = chat_history({"input": {"messages": AGUI_HISTORY}})
    assert [type(m) for m in history] == [SystemMessage, HumanMessage, AIMessage, ToolMessage]
    assert [m.id for m in history[1:3]] == ["u1", "a1"]
    call = history[2]
    assert isinstance(call, AIMessage)
    assert call.tool_calls == [
        {"name": "weather", "args": {"city": "Paris"}, "id": "c1", "type": "tool_call"}
    ]
    assert isinstance(history[3], ToolMessage) and history[3].tool_call_id == "c1"


def test_the_history_goes_between_system_and_prompt_and_an_empty_prompt_adds_nothing() -> None:
    state: RunState = {"input": {"topic": "x", "messages": AGUI_HISTORY[1:2]}}
    asked = prompt_messages(
        LlmParams(model="fake", prompt="About {input.topic}", system="S"), state
    )
    assert [(type(m), m.content) for m in asked] == [
        (SystemMessage, "S"),
        (HumanMessage, "Weather in Paris?"),
        (HumanMessage, "About x"),
    ]
    quiet = prompt_messages(LlmParams(model="fake", prompt=""), state)
    assert [m.content for m in quiet] == ["Weather in Paris?"]
    assert [m.content for m in prompt_messages(LlmParams(model="fake", prompt=""), {})] == [""]


def test_no_history_or_another_shape_is_no_history() -> None:
    assert chat_history({}) == []
    assert chat_history({"input": {"messages": "not a list"}}) == []
    assert chat_history({"input": {"messages": [1, {"role": "robot", "content": "x"}]}}) == []
