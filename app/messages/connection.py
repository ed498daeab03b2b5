"""Connection-level messages: graphpush's own, not n8n's (SPEC §5): the snapshot a stream
or subscription starts with, the runs feed's snapshot, ``resumeFailed``, and the replies to
commands."""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType

from app.messages.execution import JsonObject, Message


class ExecutionSnapshotData(msgspec.Struct):
    executionId: str
    status: str
    graph_state: JsonObject
    #: SPEC §8: node name -> message id -> the text it streamed so far, for running nodes.
    streams: dict[str, dict[str, str]] = {}


class ExecutionSnapshot(Message, tag="executionSnapshot"):
    data: ExecutionSnapshotData


class RunsSnapshotData(msgspec.Struct):
    """The runs feed's first message (SPEC §11): the list DTOs of a workflow's latest runs,
    newest first."""

    workflowId: str
    items: list[JsonObject]


class RunsSnapshot(Message, tag="runsSnapshot"):
    data: RunsSnapshotData


class ResumeFailedData(msgspec.Struct):
    lastEventId: int


class ResumeFailed(Message, tag="resumeFailed"):
    data: ResumeFailedData


class Pong(Message, tag="pong"):
    pass


class ReplyData(msgspec.Struct, omit_defaults=True):
    command: str | UnsetType = UNSET
    executionId: str | UnsetType = UNSET
    workflowId: str | UnsetType = UNSET
    code: str | UnsetType = UNSET
    message: str | UnsetType = UNSET


class Ack(Message, tag="ack"):
    data: ReplyData


class Error(Message, tag="error"):
    data: ReplyData
