"""Admission of a push request, shared by both transports: Origin, API key, parameters.

The rules are the core's (:mod:`app.push.admission`, :mod:`app.http.auth`); this module only
reads them off a Starlette connection. A refusal is rendered by :mod:`app.http.errors`.
"""

from __future__ import annotations

from typing import NamedTuple

from starlette.requests import HTTPConnection

from app.http.auth import authenticate
from app.http.params import QueryReader
from app.model.access import Caller
from app.push import admission
from app.settings import Settings


class PushRequest(NamedTuple):
    push_ref: str
    caller: Caller
    last_event_id: int | None


class StreamRequest(NamedTuple):
    caller: Caller
    after: int


class FeedRequest(NamedTuple):
    caller: Caller
    limit: int
    last_event_id: int | None


def admit_push(conn: HTTPConnection, settings: Settings) -> PushRequest:
    """``GET /agents/push``: Origin, API key or token, ``pushRef``,
    ``Last-Event-ID``/``?lastEventId=``.

    Raises :class:`~app.errors.GraphpushError` (403, 401 or 400).
    """
    admission.check_origin(conn.headers, settings.allowed_origins)
    caller = authenticate(conn, settings)
    admission.check_caller(caller)
    push_ref = admission.push_ref(conn.query_params.get("pushRef"))
    last = conn.headers.get("last-event-id") or conn.query_params.get("lastEventId")
    return PushRequest(push_ref, caller, admission.cursor(last, "lastEventId"))


def admit_stream(conn: HTTPConnection, settings: Settings) -> StreamRequest:
    """``GET /agents/executions/{id}/stream``: Origin, API key or token,
    ``Last-Event-ID``/``?after=`` (the token's scope is checked when the stream opens)."""
    admission.check_origin(conn.headers, settings.allowed_origins)
    caller = authenticate(conn, settings)
    admission.check_caller(caller)
    after = conn.headers.get("last-event-id") or conn.query_params.get("after")
    return StreamRequest(caller, admission.cursor(after, "after") or 0)


def admit_feed(conn: HTTPConnection, settings: Settings) -> FeedRequest:
    """``GET /agents/workflows/{id}/stream``: Origin, API key or token, ``?limit=`` (1 to
    200, 422 otherwise), ``Last-Event-ID``/``?lastEventId=`` (the token's scope is checked
    when the stream opens)."""
    admission.check_origin(conn.headers, settings.allowed_origins)
    caller = authenticate(conn, settings)
    admission.check_caller(caller)
    query = QueryReader(conn.query_params)
    limit = query.integer("limit", 20, low=1, high=200)
    query.check()
    last = conn.headers.get("last-event-id") or conn.query_params.get("lastEventId")
    return FeedRequest(caller, limit, admission.cursor(last, "lastEventId"))
