"""n8n's execution push messages, field for field as ``@n8n/api-types`` (SPEC §4, §8).

Every server→client message is ``{"type": T, "data": {...}}``; the Structs are tagged by
``type``. Optional fields default to ``UNSET`` and are omitted from the JSON, never sent as
``null``. ``graph_state`` is graphpush's extension on every execution message.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from msgspec import UNSET, UnsetType

JsonObject = dict[str, Any]


class Message(msgspec.Struct, tag_field="type", omit_defaults=True):
    """Base of every server→client message (its own, untagged)."""


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


class ExecutionStarted(Message, tag="executionStarted"):
    data: ExecutionStartedData


class NodeExecuteBeforeData(msgspec.Struct, omit_defaults=True):
    executionId: str
    nodeName: str
    sequenceNumber: int
    data: TaskStartedData
    graph_state: JsonObject | UnsetType = UNSET


class NodeExecuteBefore(Message, tag="nodeExecuteBefore"):
    data: NodeExecuteBeforeData


class NodeExecuteAfterMessageData(msgspec.Struct, omit_defaults=True):
    executionId: str
    nodeName: str
    sequenceNumber: int
    itemCountByConnectionType: dict[str, list[int]]
    data: TaskResultData
    graph_state: JsonObject | UnsetType = UNSET


class NodeExecuteAfter(Message, tag="nodeExecuteAfter"):
    data: NodeExecuteAfterMessageData


class NodeExecuteAfterDataMessageData(msgspec.Struct, omit_defaults=True):
    executionId: str
    nodeName: str
    itemCountByConnectionType: dict[str, list[int]]
    data: TaskResultData
    graph_state: JsonObject | UnsetType = UNSET


class NodeExecuteAfterData(Message, tag="nodeExecuteAfterData"):
    data: NodeExecuteAfterDataMessageData


class ExecutionWaitingData(msgspec.Struct, omit_defaults=True):
    executionId: str
    graph_state: JsonObject | UnsetType = UNSET


class ExecutionWaiting(Message, tag="executionWaiting"):
    data: ExecutionWaitingData


class ExecutionFinishedData(msgspec.Struct, omit_defaults=True):
    executionId: str
    workflowId: str
    status: str
    graph_state: JsonObject | UnsetType = UNSET


class ExecutionFinished(Message, tag="executionFinished"):
    data: ExecutionFinishedData


class ExecutionRecoveredData(msgspec.Struct, omit_defaults=True):
    executionId: str
    graph_state: JsonObject | UnsetType = UNSET


class ExecutionRecovered(Message, tag="executionRecovered"):
    data: ExecutionRecoveredData


class NodeExecuteStreamData(msgspec.Struct):
    """SPEC §8: chunks a running node streamed (LLM text, tool-call arguments, custom
    payloads). No ``graph_state``: the one execution message without it."""

    executionId: str
    nodeName: str
    chunks: list[JsonObject]


class NodeExecuteStream(Message, tag="nodeExecuteStream"):
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
