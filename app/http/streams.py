"""The SSE routes of the push channels as the REST document sees them (SPEC §3, §5).

``GET /agents/push`` (SSE), ``GET /agents/executions/{id}/stream``, the runs feed
``GET /agents/workflows/{id}/stream`` and AG-UI's ``POST /agents/workflows/{id}/agui`` are
served by ``transports/``; the messages of the first three are described by
``/asyncapi.yaml``, AG-UI's events by its protocol. ``/openapi.json`` lists
them too, from these declarations: parameters with their limits, the event-stream answer
and the refusals (the SPEC §3 error body) each can give.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from ag_ui.core import RunAgentInput

from app.errors import (
    BackendUnavailable,
    BadRequest,
    Forbidden,
    GraphpushError,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    TokenRejected,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from app.http.operation import Header, Query
from app.http.params import EXECUTION_PATH, WORKFLOW_PATH
from app.model.cursor import MAX_CURSOR
from app.model.ids import ID_PATTERN


@dataclass(frozen=True, slots=True)
class EventStreamRoute:
    """A ``text/event-stream`` answer whose events are the messages of an AsyncAPI
    ``channel``, or (no channel) AG-UI's events; ``body``: a POST's JSON Schema."""

    path: str
    name: str
    summary: str
    channel: str | None
    query: tuple[Query, ...]
    errors: tuple[type[GraphpushError], ...]
    headers: tuple[Header, ...] = ()
    method: str = "GET"
    body: dict[str, Any] | None = None


LAST_EVENT_ID: Final = Header(
    "Last-Event-ID",
    "resume after this id (sent by EventSource when it reconnects)",
    {"type": "string", "pattern": f"^[0-9]{{0,{len(str(MAX_CURSOR))}}}$"},
)
REFUSALS: Final = (BadRequest, Unauthorized, TokenRejected, Forbidden)


def _agui_input() -> dict[str, Any]:
    """AG-UI's ``RunAgentInput`` as its library describes it (its ``$defs`` become
    components of ``/openapi.json``), with ``state`` an object or null (the run's input) and
    every tagged union's tag required."""
    schema = RunAgentInput.model_json_schema(
        by_alias=True, ref_template="#/components/schemas/{model}"
    )
    schema["properties"]["state"] = {"anyOf": [{"type": "object"}, {"type": "null"}]}
    for tag, name in _discriminators(schema):
        # A tag with a default still picks the union's member: the library needs it sent.
        definition = schema["$defs"][name]
        definition["required"] = sorted({*definition.get("required", ()), tag})
    return schema


def _discriminators(node: Any) -> Iterator[tuple[str, str]]:
    """Each (tag property, member schema name) of the tagged unions within ``node``."""
    if isinstance(node, dict):
        if discriminator := node.get("discriminator"):
            for ref in discriminator["mapping"].values():
                yield discriminator["propertyName"], ref.rsplit("/", 1)[-1]
        for value in node.values():
            yield from _discriminators(value)
    elif isinstance(node, list):
        for value in node:
            yield from _discriminators(value)


AGUI_INPUT: Final = _agui_input()

EVENT_STREAMS: Final = (
    EventStreamRoute(
        "/agents/push",
        "pushEvents",
        "A push connection over SSE (WebSocket: the same path, upgraded)",
        "push",
        (
            Query("pushRef", f"the connection's pushRef, {ID_PATTERN}", "identifier", True),
            Query("lastEventId", "resume after this meta.id", "integer"),
        ),
        (*REFUSALS, NotAcceptable),
        (LAST_EVENT_ID, Header("Accept", "text/event-stream (or none)")),
    ),
    EventStreamRoute(
        f"{EXECUTION_PATH}/stream",
        "executionStream",
        "One execution's messages: its snapshot, the log after a seq, then live",
        "executionStream",
        (Query("after", "start after this seq", "integer"),),
        (*REFUSALS, NotFound),
        (LAST_EVENT_ID,),
    ),
    EventStreamRoute(
        f"{WORKFLOW_PATH}/stream",
        "runsFeed",
        "A workflow's runs feed: its latest runs, then their lifecycle messages, live",
        "runsFeed",
        (
            Query(
                "limit",
                "how many of the latest runs the snapshot lists",
                "integer",
                default=20,
                low=1,
                high=200,
            ),
            Query("lastEventId", "resume after this feed cursor", "integer"),
        ),
        (*REFUSALS, NotFound, ValidationFailed),
        (LAST_EVENT_ID,),
    ),
    EventStreamRoute(
        f"{WORKFLOW_PATH}/agui",
        "aguiRun",
        "Run the workflow from an AG-UI RunAgentInput; the answer is its AG-UI event stream",
        None,
        (),
        (
            BadRequest,
            Unauthorized,
            TokenRejected,
            Forbidden,
            NotFound,
            PayloadTooLarge,
            UnsupportedMediaType,
            ValidationFailed,
            BackendUnavailable,
        ),
        method="POST",
        body=AGUI_INPUT,
    ),
)
