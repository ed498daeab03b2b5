"""Inbound WebSocket commands (SPEC §5.1), decoded by :data:`command_decoder`; unknown
fields are ignored, an unknown ``type`` is a decode error."""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from app.model.cursor import Cursor
from app.model.ids import Identifier


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
