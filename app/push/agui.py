"""AG-UI (SPEC §11): one run's push messages projected to AG-UI events, for any AG-UI
client (CopilotKit, ``@ag-ui/client``). Pure: push messages in, encoded events out.

The projection reads the execution stream (§5.4: ``executionSnapshot``, then the log, then
live messages) and keeps what AG-UI needs to pair its events (open steps, text messages
and tool calls). docs/protocol.md §20 has the table; in short:

==========================  ==========================================================
push message                AG-UI events
==========================  ==========================================================
executionSnapshot (first)   RUN_STARTED (``threadId``, ``runId``; ``metadata.executionId``)
executionStarted            STATE_SNAPSHOT (``graph_state``)
nodeExecuteBefore           STEP_STARTED (``stepName`` = node name), STATE_SNAPSHOT
nodeExecuteStream           per chunk: text → TEXT_MESSAGE_START (once per message),
                            TEXT_MESSAGE_CONTENT; tool_call → TOOL_CALL_START (once per
                            call), TOOL_CALL_ARGS; custom → CUSTOM (``name`` = node name)
nodeExecuteAfter            TEXT_MESSAGE_END / TOOL_CALL_END of the node's open ones,
                            STEP_FINISHED, STATE_SNAPSHOT
executionWaiting            ends what is open, STATE_SNAPSHOT, RUN_FINISHED with an
                            ``interrupt`` outcome (resume over REST)
executionFinished           ends what is open, STATE_SNAPSHOT, then ``success``:
                            RUN_FINISHED; ``canceled``: RUN_FINISHED with a
                            ``cancelled`` outcome; otherwise RUN_ERROR
==========================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import msgspec
import pydantic
from ag_ui.core import (
    BaseEvent,
    CustomEvent,
    Interrupt,
    RunAgentInput,
    RunErrorEvent,
    RunFinishedCancelledOutcome,
    RunFinishedEvent,
    RunFinishedInterruptOutcome,
    RunStartedEvent,
    StateSnapshotEvent,
    StepFinishedEvent,
    StepStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallStartEvent,
)
from ag_ui.encoder import EventEncoder

from app.errors import BadRequest, ValidationFailed, problem
from app.push.wire import Outgoing

JsonObject = dict[str, Any]

#: The run input key that holds the AG-UI ``messages`` (the chat history ``llm`` nodes see).
MESSAGES_KEY: Final = "messages"

_ENCODER: Final = EventEncoder()


def parse_input(body: bytes) -> RunAgentInput:
    """``body`` as AG-UI's ``RunAgentInput``: 400 if it is not JSON, 422 naming each problem
    (``state`` must be an object)."""
    try:
        run_input = RunAgentInput.model_validate_json(body)
    except pydantic.ValidationError as exc:
        errors = exc.errors(include_url=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise BadRequest("the body is not JSON") from None
        problems = [problem(_path(e["loc"]), e["msg"]) for e in errors]
        raise ValidationFailed("the body is not an AG-UI RunAgentInput", problems) from None
    if run_input.state is not None and not isinstance(run_input.state, dict):
        raise ValidationFailed("bad state", [problem("state", "expected an object")])
    return run_input


def run_input(agent_input: RunAgentInput) -> JsonObject:
    """The workflow run's input: ``state``, with the AG-UI ``messages`` under
    :data:`MESSAGES_KEY`."""
    history = [m.model_dump(mode="json", by_alias=True) for m in agent_input.messages]
    return {**(agent_input.state or {}), MESSAGES_KEY: history}


def _path(loc: Iterable[int | str]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


class AguiRun:
    """The AG-UI events of one run, built message by message from its execution stream.
    ``done`` once RUN_FINISHED or RUN_ERROR was produced; nothing follows it."""

    def __init__(self, thread_id: str, run_id: str) -> None:
        self.thread_id = thread_id
        self.run_id = run_id
        self.done = False
        self._started = False
        self._steps: list[str] = []  # node names, in start order
        self._texts: dict[str, str] = {}  # open message id -> node name
        self._tools: dict[tuple[str, int], tuple[str, str]] = {}  # (msg, index) -> (id, node)

    def encode(self, batch: Iterable[Outgoing]) -> bytes:
        """The SSE bytes (AG-UI's ``EventEncoder``) of the events of ``batch``."""
        events = [e for out in batch for e in self.project(msgspec.json.decode(out.payload))]
        return "".join(_ENCODER.encode(e) for e in events).encode()

    def project(self, message: JsonObject) -> list[BaseEvent]:
        """The AG-UI events of one push message (none after the run's end)."""
        if self.done:
            return []
        kind, data = message.get("type"), message.get("data", {})
        if kind == "executionSnapshot" and not self._started:
            self._started = True
            metadata = {"executionId": data.get("executionId")}
            return [
                RunStartedEvent(thread_id=self.thread_id, run_id=self.run_id, metadata=metadata)
            ]
        events = self._node(kind, data) if kind != "nodeExecuteStream" else self._chunks(data)
        if kind in ("executionWaiting", "executionFinished"):
            events += self._close(lambda _: True)
        if kind != "nodeExecuteAfterData" and isinstance(data.get("graph_state"), dict):
            events.append(StateSnapshotEvent(snapshot=data["graph_state"]))
        if kind == "executionWaiting":
            events.append(self._interrupted(data))
        elif kind == "executionFinished":
            events.append(self._finished(data))
        return events

    # ---- nodes ----------------------------------------------------------------------------

    def _node(self, kind: object, data: JsonObject) -> list[BaseEvent]:
        name = data.get("nodeName")
        if not isinstance(name, str):
            return []
        if kind == "nodeExecuteBefore":
            self._steps.append(name)
            return [StepStartedEvent(step_name=name)]
        if kind == "nodeExecuteAfter" and name in self._steps:
            return self._close(lambda node: node == name)
        return []

    def _chunks(self, data: JsonObject) -> list[BaseEvent]:
        node = str(data.get("nodeName", ""))
        events: list[BaseEvent] = []
        for chunk in data.get("chunks", []):
            match chunk:
                case {"kind": "text", "messageId": str(message_id), "text": str(text)}:
                    events += self._text(node, message_id, text)
                case {"kind": "tool_call", "messageId": str(message_id), "index": int(index)}:
                    events += self._tool_call(node, message_id, index, chunk)
                case {"kind": "custom", "data": value}:
                    events.append(CustomEvent(name=node, value=value))
        return events

    def _text(self, node: str, message_id: str, text: str) -> list[BaseEvent]:
        events: list[BaseEvent] = []
        if message_id not in self._texts:
            self._texts[message_id] = node
            events.append(TextMessageStartEvent(message_id=message_id, role="assistant"))
        if text:  # AG-UI content carries a non-empty delta
            events.append(TextMessageContentEvent(message_id=message_id, delta=text))
        return events

    def _tool_call(
        self, node: str, message_id: str, index: int, chunk: JsonObject
    ) -> list[BaseEvent]:
        events: list[BaseEvent] = []
        key = (message_id, index)
        if key not in self._tools:
            call_id = str(chunk.get("id") or f"{message_id}-{index}")
            self._tools[key] = (call_id, node)
            name = str(chunk.get("name") or "tool")
            events.append(
                ToolCallStartEvent(
                    tool_call_id=call_id, tool_call_name=name, parent_message_id=message_id
                )
            )
        args = chunk.get("args")
        if isinstance(args, str) and args:
            events.append(ToolCallArgsEvent(tool_call_id=self._tools[key][0], delta=args))
        return events

    def _close(self, of: Any) -> list[BaseEvent]:
        """End the open text messages, tool calls and steps of the nodes ``of`` selects."""
        events: list[BaseEvent] = []
        for message_id, node in list(self._texts.items()):
            if of(node):
                del self._texts[message_id]
                events.append(TextMessageEndEvent(message_id=message_id))
        for key, (call_id, node) in list(self._tools.items()):
            if of(node):
                del self._tools[key]
                events.append(ToolCallEndEvent(tool_call_id=call_id))
        for node in [n for n in self._steps if of(n)]:
            self._steps.remove(node)
            events.append(StepFinishedEvent(step_name=node))
        return events

    # ---- the end --------------------------------------------------------------------------

    def _interrupted(self, data: JsonObject) -> BaseEvent:
        self.done = True
        execution_id = str(data.get("executionId"))
        interrupt = Interrupt(
            id=execution_id,
            reason="waiting",
            message=f"resume with POST /agents/executions/{execution_id}/resume",
        )
        outcome = RunFinishedInterruptOutcome(interrupts=[interrupt])
        return RunFinishedEvent(thread_id=self.thread_id, run_id=self.run_id, outcome=outcome)

    def _finished(self, data: JsonObject) -> BaseEvent:
        self.done = True
        status = data.get("status")
        if status == "success":
            return RunFinishedEvent(thread_id=self.thread_id, run_id=self.run_id)
        if status == "canceled":
            outcome = RunFinishedCancelledOutcome()
            return RunFinishedEvent(thread_id=self.thread_id, run_id=self.run_id, outcome=outcome)
        errors = data.get("graph_state", {}).get("errors") or [{}]
        message = str(errors[-1].get("message") or f"the run ended {status}")
        return RunErrorEvent(message=message, code=str(status))
