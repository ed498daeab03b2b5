"""Push messages, field for field as n8n's ``@n8n/api-types`` push types (SPEC §4).

Every server→client message is ``{"type": T, "data": {...}}``; the Structs below are tagged
by ``type`` and encoded once with :data:`encoder`. Optional fields default to ``UNSET`` and
are omitted from the JSON, never sent as ``null``. ``graph_state`` is graphpush's extension
on every execution message. Inbound WebSocket commands are decoded by :data:`command_decoder`.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import UNSET, UnsetType

from app.model.cursor import Cursor
from app.model.ids import Identifier

JsonObject = dict[str, Any]


class _Message(msgspec.Struct, tag_field="type", omit_defaults=True):
    """Base of every server→client message."""


class SourceData(msgspec.Struct):
    previousNode: str
    previousNodeOutput: int = 0
    previousNodeRun: int = 0


class TaskStartedData(msgspec.Struct):
    """n8n's ``ITaskStartedData``."""

    startTime: int
    executionIndex: int
    source: list[SourceData]
    hints: list[JsonObject]


class TaskResultData(msgspec.Struct, omit_defaults=True):
    """n8n's ``Omit<ITaskData, 'data'>`` (``nodeExecuteAfter``) or ``ITaskData`` with ``data``."""

    startTime: int
    executionIndex: int
    source: list[SourceData]
    hints: list[JsonObject]
    executionTime: int
    executionStatus: str
    error: JsonObject | UnsetType = UNSET
    data: dict[str, list[list[JsonObject]]] | UnsetType = UNSET


class ExecutionStartedData(msgspec.Struct, omit_defaults=True):
    executionId: str
    mode: str
    startedAt: str
    workflowId: str
    flattedRunData: str
    workflowName: str | UnsetType = UNSET
    retryOf: str | UnsetType = UNSET
    graph_state: JsonObject | UnsetType = UNSET


class ExecutionStarted(_Message, tag="executionStarted"):
    data: ExecutionStartedData


class NodeExecuteBeforeData(msgspec.Struct, omit_defaults=True):
    executionId: str
    nodeName: str
    sequenceNumber: int
    data: TaskStartedData
    graph_state: JsonObject | UnsetType = UNSET


class NodeExecuteBefore(_Message, tag="nodeExecuteBefore"):
    data: NodeExecuteBeforeData


class NodeExecuteAfterMessageData(msgspec.Struct, omit_defaults=True):
    executionId: str
    nodeName: str
    sequenceNumber: int
    itemCountByConnectionType: dict[str, list[int]]
    data: TaskResultData
    graph_state: JsonObject | UnsetType = UNSET


class NodeExecuteAfter(_Message, tag="nodeExecuteAfter"):
    data: NodeExecuteAfterMessageData


class NodeExecuteAfterDataMessageData(msgspec.Struct, omit_defaults=True):
    executionId: str
    nodeName: str
    itemCountByConnectionType: dict[str, list[int]]
    data: TaskResultData
    graph_state: JsonObject | UnsetType = UNSET


class NodeExecuteAfterData(_Message, tag="nodeExecuteAfterData"):
    data: NodeExecuteAfterDataMessageData


class ExecutionWaitingData(msgspec.Struct, omit_defaults=True):
    executionId: str
    graph_state: JsonObject | UnsetType = UNSET


class ExecutionWaiting(_Message, tag="executionWaiting"):
    data: ExecutionWaitingData


class ExecutionFinishedData(msgspec.Struct, omit_defaults=True):
    executionId: str
    workflowId: str
    status: str
    graph_state: JsonObject | UnsetType = UNSET


class ExecutionFinished(_Message, tag="executionFinished"):
    data: ExecutionFinishedData


class ExecutionRecoveredData(msgspec.Struct, omit_defaults=True):
    executionId: str
    graph_state: JsonObject | UnsetType = UNSET


class ExecutionRecovered(_Message, tag="executionRecovered"):
    data: ExecutionRecoveredData


class NodeExecuteStreamData(msgspec.Struct):
    """SPEC §8: chunks a running node streamed (LLM text, tool-call arguments, custom
    payloads). No ``graph_state``: the one execution message without it."""

    executionId: str
    nodeName: str
    chunks: list[JsonObject]


class NodeExecuteStream(_Message, tag="nodeExecuteStream"):
    data: NodeExecuteStreamData


ExecutionMessage = (
    ExecutionStarted
    | NodeExecuteBefore
    | NodeExecuteStream
    | NodeExecuteAfter
    | NodeExecuteAfterData
    | ExecutionWaiting
    | ExecutionFinished
    | ExecutionRecovered
)

#: The message after which an execution's stream ends.
TERMINAL: Final = "executionFinished"
#: Sent as a binary WebSocket frame, as n8n does.
BINARY_TYPES: Final = frozenset({"nodeExecuteAfterData"})

#: n8n's editor shows this in place of each item of output data too large to push.
TRIMMED_ITEM: Final[JsonObject] = {"json": {"__isTrimmedManualExecutionDataItem": True}}


def _fallback(value: object) -> object:
    """Values JSON has no form for (a registered graph may return any object): a pydantic
    model (a LangChain message, say) as its JSON form, anything else as text."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json")
        except Exception:  # a model whose fields JSON cannot hold: shown as text like others
            return repr(value)
    return repr(value)


encoder: Final = msgspec.json.Encoder(enc_hook=_fallback)


def encode(message: ExecutionMessage) -> bytes:
    return encoder.encode(message)


# ---- connection-level messages (graphpush's own, not n8n's) -------------------------------


class ExecutionSnapshotData(msgspec.Struct):
    executionId: str
    status: str
    graph_state: JsonObject
    #: SPEC §8: node name -> message id -> the text it streamed so far, for running nodes.
    streams: dict[str, dict[str, str]] = {}


class ExecutionSnapshot(_Message, tag="executionSnapshot"):
    data: ExecutionSnapshotData


class RunsSnapshotData(msgspec.Struct):
    """The runs feed's first message (SPEC §11): the list DTOs of a workflow's latest runs,
    newest first."""

    workflowId: str
    items: list[JsonObject]


class RunsSnapshot(_Message, tag="runsSnapshot"):
    data: RunsSnapshotData


class ResumeFailedData(msgspec.Struct):
    lastEventId: int


class ResumeFailed(_Message, tag="resumeFailed"):
    data: ResumeFailedData


class Pong(_Message, tag="pong"):
    pass


class ReplyData(msgspec.Struct, omit_defaults=True):
    command: str | UnsetType = UNSET
    executionId: str | UnsetType = UNSET
    workflowId: str | UnsetType = UNSET
    code: str | UnsetType = UNSET
    message: str | UnsetType = UNSET


class Ack(_Message, tag="ack"):
    data: ReplyData


class Error(_Message, tag="error"):
    data: ReplyData


# ---- inbound WebSocket commands (SPEC §5.1) ------------------------------------------------


class _Command(msgspec.Struct, tag_field="type", forbid_unknown_fields=False):
    pass


class ExecutionRef(msgspec.Struct):
    executionId: Identifier


class SubscribeRef(msgspec.Struct):
    executionId: Identifier
    after: Cursor | None = None


class WorkflowRef(msgspec.Struct):
    workflowId: Identifier


class FeedRef(msgspec.Struct):
    """``limit``: how many of the latest runs the ``runsSnapshot`` lists (SPEC §11)."""

    workflowId: Identifier
    limit: Annotated[int, msgspec.Meta(ge=1, le=200)] = 20


class Heartbeat(_Command, tag="heartbeat"):
    pass


class Ping(_Command, tag="ping"):
    pass


class SubscribeExecution(_Command, tag="subscribe_execution"):
    data: SubscribeRef


class UnsubscribeExecution(_Command, tag="unsubscribe_execution"):
    data: ExecutionRef


class CancelExecution(_Command, tag="cancel_execution"):
    data: ExecutionRef


class SubscribeWorkflow(_Command, tag="subscribe_workflow"):
    data: FeedRef


class UnsubscribeWorkflow(_Command, tag="unsubscribe_workflow"):
    data: WorkflowRef


Command = (
    Heartbeat
    | Ping
    | SubscribeExecution
    | UnsubscribeExecution
    | CancelExecution
    | SubscribeWorkflow
    | UnsubscribeWorkflow
)
CommandType = Literal[
    "heartbeat",
    "ping",
    "subscribe_execution",
    "unsubscribe_execution",
    "cancel_execution",
    "subscribe_workflow",
    "unsubscribe_workflow",
]

command_decoder: Final = msgspec.json.Decoder(Command)
