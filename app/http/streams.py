"""The SSE routes of the push channels as the REST document sees them (SPEC §3, §5).

``GET /agents/push`` (SSE) and ``GET /agents/executions/{id}/stream`` are served by
``transports/``; their messages are described by ``/asyncapi.yaml``. ``/openapi.json`` lists
them too, from these declarations: parameters with their limits, the event-stream answer
and the refusals (the SPEC §3 error body) each can give.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from app.errors import (
    BadRequest,
    Forbidden,
    GraphpushError,
    NotAcceptable,
    NotFound,
    TokenRejected,
    Unauthorized,
)
from app.http.operation import Header, Query
from app.http.params import EXECUTION_PATH
from app.model.cursor import MAX_CURSOR
from app.model.ids import ID_PATTERN


@dataclass(frozen=True, slots=True)
class EventStreamRoute:
    """A ``text/event-stream`` GET whose events are the messages of an AsyncAPI channel."""

    path: str
    name: str
    summary: str
    channel: str
    query: tuple[Query, ...]
    errors: tuple[type[GraphpushError], ...]
    headers: tuple[Header, ...] = ()


LAST_EVENT_ID: Final = Header(
    "Last-Event-ID",
    "resume after this id (sent by EventSource when it reconnects)",
    {"type": "string", "pattern": f"^[0-9]{{0,{len(str(MAX_CURSOR))}}}$"},
)
REFUSALS: Final = (BadRequest, Unauthorized, TokenRejected, Forbidden)

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
)
