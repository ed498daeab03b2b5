"""The AsyncAPI 3 document of the push channels (SPEC §12), generated from the message Structs.

``python -m app.http.asyncapi > docs/asyncapi.yaml`` writes it; the app serves the same text
at ``/asyncapi.yaml``. Every schema comes from :mod:`app.messages` through
``msgspec.json.schema_components`` and the close codes from
:class:`~app.push.connection.CloseCode`, so a changed Struct changes the document (a test
fails while ``docs/asyncapi.yaml`` is stale).
"""

from __future__ import annotations

import sys
from importlib.metadata import version
from typing import Any, Final, get_args

import msgspec
import yaml

from app import messages as m
from app.model.cursor import MAX_CURSOR
from app.model.ids import ID_PATTERN
from app.push.connection import CloseCode

JsonObject = dict[str, Any]
Kind = type[msgspec.Struct]
REF: Final = "#/components/schemas/{name}"

#: Server → client on every push channel: the execution messages (SPEC §4, §8).
EXECUTION_MESSAGES: Final[tuple[Kind, ...]] = get_args(m.ExecutionMessage)
#: Server → client on ``/agents/push`` besides them (SPEC §5.1, §5.4).
CONNECTION_MESSAGES: Final[tuple[Kind, ...]] = (
    m.RunsSnapshot,
    m.ResumeFailed,
    m.Pong,
    m.Ack,
    m.Error,
)
#: The runs feed (SPEC §11): its snapshot, then the lifecycle messages of the workflow's runs.
FEED_MESSAGES: Final[tuple[Kind, ...]] = (
    m.RunsSnapshot,
    m.ExecutionStarted,
    m.ExecutionWaiting,
    m.ExecutionFinished,
)
#: Client → server over the WebSocket, each with the replies it can get (none: ignored).
COMMANDS: Final[dict[Kind, tuple[Kind, ...]]] = {
    m.Heartbeat: (),
    m.Ping: (m.Pong,),
    m.SubscribeExecution: (m.Ack, m.Error),
    m.UnsubscribeExecution: (m.Ack, m.Error),
    m.CancelExecution: (m.Ack, m.Error),
    m.SubscribeWorkflow: (m.RunsSnapshot, m.Ack, m.Error),
    m.UnsubscribeWorkflow: (m.Ack, m.Error),
}

#: What each close code of a push WebSocket means (SSE ends its stream instead).
CLOSE_CODES: Final = {
    CloseCode.NORMAL: "replaced by a newer connection of the same pushRef",
    CloseCode.GOING_AWAY: "the server is shutting down; reconnect with the last meta.id",
    CloseCode.POLICY_VIOLATION: (
        "refused: a cross-site Origin, a bad pushRef or lastEventId, a token expired, forged "
        "or out of scope"
    ),
    CloseCode.MESSAGE_TOO_BIG: "a client frame over max_inbound_frame_bytes (64 KiB)",
    CloseCode.INTERNAL_ERROR: "no pong to the server's ping in time, or a server fault",
    CloseCode.SLOW_CONSUMER: "slow consumer: the outbound buffer filled; resume from meta.id",
    CloseCode.UNAUTHORIZED: "API keys are on and no valid one was given",
}

MESSAGE_SUMMARIES: Final = {
    "executionStarted": "a run started (n8n's ExecutionStarted)",
    "nodeExecuteBefore": "a node started (n8n's NodeExecuteBefore)",
    "nodeExecuteStream": "text, tool-call arguments or custom payloads a running node streamed",
    "nodeExecuteAfter": "a node ended, without its output data (n8n's NodeExecuteAfter)",
    "nodeExecuteAfterData": "a node ended, with its output data (binary frame on WebSocket)",
    "executionWaiting": "the run is paused at a wait node, durably (resume over REST)",
    "executionFinished": "the run ended: the last message of every run",
    "executionRecovered": "a run whose process died was marked crashed",
    "executionSnapshot": "the execution's status and graph_state when the stream opened",
    "runsSnapshot": "the runs feed's first message: a workflow's latest runs (list DTOs), "
    "newest first",
    "resumeFailed": "the messages after lastEventId are no longer kept: refetch over REST",
    "pong": "the reply to ping",
    "ack": "a command was carried out (`executionId` or `workflowId`: what it named)",
    "error": "a command was refused: invalid_json, invalid_message, unknown_command, "
    "invalid_command, or the error code of what it asked (not_found, illegal_transition)",
    "heartbeat": "n8n's keep-alive; ignored, no reply",
    "ping": "asks for a pong",
    "subscribe_execution": "also receive this execution's messages, the logged ones after "
    "`after` first",
    "unsubscribe_execution": "stop receiving a subscribed execution's messages",
    "cancel_execution": "cancel a new, running or waiting run",
    "subscribe_workflow": "follow a workflow's runs feed: a `runsSnapshot` of its latest "
    "`limit` runs, then the lifecycle messages of its runs",
    "unsubscribe_workflow": "stop following a workflow's runs feed",
}

CURSOR: Final = {"type": "integer", "minimum": 0, "maximum": MAX_CURSOR}
PUSH_QUERY: Final = {
    "type": "object",
    "properties": {
        "pushRef": {"type": "string", "pattern": f"^{ID_PATTERN}$"},
        "lastEventId": {**CURSOR, "description": "resume after this meta.id"},
        "token": {
            "type": "string",
            "description": "an API key (when keys are on) or a scoped token",
        },
    },
    "required": ["pushRef"],
}
TOKEN: Final = {"type": "string", "description": "an API key (when keys are on) or a scoped token"}
STREAM_QUERY: Final = {
    "type": "object",
    "properties": {
        "after": {**CURSOR, "description": "start after this seq (or Last-Event-ID)"},
        "token": TOKEN,
    },
}

FEED_QUERY: Final = {
    "type": "object",
    "properties": {
        "limit": {
            "type": "integer",
            "minimum": 1,
            "maximum": 200,
            "default": 20,
            "description": "how many of the latest runs the snapshot lists",
        },
        "lastEventId": {**CURSOR, "description": "resume after this feed cursor"},
        "token": TOKEN,
    },
}

PUSH_DESCRIPTION: Final = """\
One connection per `pushRef`, by WebSocket (an upgrade) or Server-Sent Events (a plain GET
with `Accept: text/event-stream`). It receives the messages of every run started with its
`push_ref` and of every execution it subscribed to. Each message has a connection cursor:
`meta.id` beside `type` and `data` on WebSocket, the `id:` line on SSE. Reconnecting with the
same `pushRef` and `lastEventId` (or SSE's `Last-Event-ID`) replays what was missed, or sends
`resumeFailed` first when that is no longer kept. `nodeExecuteAfterData` is a binary frame on
WebSocket; every other message is text. Close codes are in `x-close-codes`."""

STREAM_DESCRIPTION: Final = """\
One execution over SSE: `executionSnapshot` (no `id:`), then every logged message after
`Last-Event-ID` (or `?after=`) with its execution `seq` as `id:`, then live messages; the
stream ends after `executionFinished` and stays open through a wait."""

FEED_DESCRIPTION: Final = """\
A workflow's runs feed over SSE: `runsSnapshot` (its latest `limit` runs, newest first),
then `executionStarted`, `executionWaiting` and `executionFinished` of every run of the
workflow, each with the workflow's feed cursor as `id:`. `Last-Event-ID` (or
`?lastEventId=`) resumes after it without a new snapshot while the server holds it, or
starts with a new snapshot. On WebSocket: `subscribe_workflow` on `/agents/push`."""


def asyncapi_document() -> JsonObject:
    """The whole document."""
    server_messages: tuple[Kind, ...] = (*EXECUTION_MESSAGES, *CONNECTION_MESSAGES)
    stream_messages: tuple[Kind, ...] = (m.ExecutionSnapshot, *EXECUTION_MESSAGES)
    structs = list(dict.fromkeys((*server_messages, *stream_messages, *FEED_MESSAGES, *COMMANDS)))
    _, schemas = msgspec.json.schema_components(structs, ref_template=REF)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "graphpush push channels",
            "version": version("graphpush"),
            "description": "n8n's push messages, live, with resume (docs/protocol.md).",
        },
        "defaultContentType": "application/json",
        "servers": {
            "websocket": {"host": "127.0.0.1:8000", "protocol": "ws", "description": "wss: TLS"},
            "sse": {"host": "127.0.0.1:8000", "protocol": "http", "description": "SSE"},
        },
        "channels": {
            "push": _push_channel((*server_messages, *COMMANDS)),
            "executionStream": _stream_channel(stream_messages),
            "runsFeed": _feed_channel(),
        },
        "operations": {
            "receivePush": _receive("push", server_messages),
            "receiveExecutionStream": _receive("executionStream", stream_messages),
            "receiveRunsFeed": _receive("runsFeed", FEED_MESSAGES),
            **{_name(c): _command(c, replies) for c, replies in COMMANDS.items()},
        },
        "components": {
            "messages": {_name(s): _message(s) for s in structs},
            "schemas": schemas,
        },
    }


def _name(struct: Kind) -> str:
    """A message's ``type`` tag: its name in the document."""
    return str(struct.__struct_config__.tag)


def _message(struct: Kind) -> JsonObject:
    name = _name(struct)
    return {
        "name": name,
        "title": name,
        "summary": MESSAGE_SUMMARIES[name],
        "payload": {"$ref": REF.format(name=struct.__name__)},
    }


def _refs(channel: str, structs: tuple[Kind, ...]) -> list[JsonObject]:
    return [{"$ref": f"#/channels/{channel}/messages/{_name(s)}"} for s in structs]


def _channel_messages(structs: tuple[Kind, ...]) -> JsonObject:
    return {_name(s): {"$ref": f"#/components/messages/{_name(s)}"} for s in structs}


def _push_channel(structs: tuple[Kind, ...]) -> JsonObject:
    return {
        "address": "/agents/push",
        "title": "push connection (WebSocket and SSE)",
        "description": PUSH_DESCRIPTION,
        "servers": [{"$ref": "#/servers/websocket"}, {"$ref": "#/servers/sse"}],
        "messages": _channel_messages(structs),
        "bindings": {"ws": {"method": "GET", "query": PUSH_QUERY, "bindingVersion": "0.1.0"}},
        "x-close-codes": [
            {"code": int(code), "name": code.name.lower(), "meaning": CLOSE_CODES[code]}
            for code in CloseCode
        ],
    }


def _stream_channel(structs: tuple[Kind, ...]) -> JsonObject:
    return {
        "address": "/agents/executions/{executionId}/stream",
        "title": "one execution's stream (SSE)",
        "description": STREAM_DESCRIPTION,
        "servers": [{"$ref": "#/servers/sse"}],
        "parameters": {"executionId": {"description": "the execution id"}},
        "messages": _channel_messages(structs),
        "x-query": STREAM_QUERY,
    }


def _feed_channel() -> JsonObject:
    return {
        "address": "/agents/workflows/{workflowId}/stream",
        "title": "a workflow's runs feed (SSE)",
        "description": FEED_DESCRIPTION,
        "servers": [{"$ref": "#/servers/sse"}],
        "parameters": {"workflowId": {"description": "the workflow id"}},
        "messages": _channel_messages(FEED_MESSAGES),
        "x-query": FEED_QUERY,
    }


def _receive(channel: str, structs: tuple[Kind, ...]) -> JsonObject:
    return {
        "action": "receive",
        "channel": {"$ref": f"#/channels/{channel}"},
        "messages": _refs(channel, structs),
    }


def _command(command: Kind, replies: tuple[Kind, ...]) -> JsonObject:
    operation: JsonObject = {
        "action": "send",
        "channel": {"$ref": "#/channels/push"},
        "summary": f"WebSocket only. {MESSAGE_SUMMARIES[_name(command)]}",
        "messages": _refs("push", (command,)),
    }
    if replies:
        operation["reply"] = {
            "channel": {"$ref": "#/channels/push"},
            "messages": _refs("push", replies),
        }
    return operation


class _Dumper(yaml.SafeDumper):
    """Writes text of several lines as a ``|`` block, as it reads in the source."""


def _text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _text)


def asyncapi_yaml() -> str:
    """The document as YAML (``docs/asyncapi.yaml``)."""
    document = asyncapi_document()
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


if __name__ == "__main__":
    sys.stdout.write(asyncapi_yaml())
