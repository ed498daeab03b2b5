"""Who may open a push connection, and with which parameters (SPEC §5.1, §5.4, §5.5).

Pure checks shared by both transports; API keys and scoped tokens are read by
:func:`app.http.auth.authenticate` in the transport's request handling, and the caller they
yield is checked here and by :func:`~app.model.access.sees`. Refusals are
:class:`~app.errors.GraphpushError`s, rendered by :mod:`app.http.errors` (SSE: status and
JSON error body; WebSocket: close code).
"""

from __future__ import annotations

from collections.abc import Mapping

from app.errors import BadRequest, Forbidden
from app.model.access import Caller
from app.model.cursor import MAX_CURSOR, parse_integer
from app.model.ids import ID_PATTERN, is_identifier
from app.push.origin import origin_allowed


def check_origin(headers: Mapping[str, str], allowed: tuple[str, ...]) -> None:
    """Raise :class:`Forbidden` unless :func:`~app.push.origin.origin_allowed`."""
    if not origin_allowed(headers, allowed):
        raise Forbidden("cross-site push connections are not allowed from this Origin")


def push_ref(value: str | None) -> str:
    """The validated ``pushRef`` query parameter (``[A-Za-z0-9_-]{1,64}``)."""
    if value is None or not is_identifier(value):
        raise BadRequest(f"the query parameter pushRef must match {ID_PATTERN}")
    return value


def cursor(value: str | None, name: str) -> int | None:
    """A resume cursor (``Last-Event-ID``, ``lastEventId``, ``after``): None when absent, else
    an integer from 0 to :data:`~app.model.cursor.MAX_CURSOR` (:class:`BadRequest` if not)."""
    if value is None or value == "":
        return None
    parsed = parse_integer(value)
    if parsed is None:
        raise BadRequest(f"{name} must be an integer from 0 to {MAX_CURSOR}")
    return parsed


def accepts_event_stream(accept: str | None) -> bool:
    """False only when ``Accept`` is given and rules out ``text/event-stream``."""
    if not accept:
        return True
    types = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    return bool(types & {"text/event-stream", "text/*", "*/*"})


def check_caller(caller: Caller) -> None:
    """A push connection receives messages: a scoped token needs ``read`` (:class:`Forbidden`).
    Which messages it then receives is :func:`~app.model.access.sees`, applied by the registry."""
    caller.require_action("read")
