"""Who may open a push connection, and with which parameters (SPEC §5.1, §5.4, §5.5).

Pure checks shared by both transports; API keys are checked by :func:`app.http.auth.authenticate`
in the transport's request handling. Refusals are :class:`~app.errors.GraphpushError`s,
rendered by :mod:`app.http.errors` (SSE: status and JSON error body; WebSocket: close code).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from app.errors import BadRequest, Forbidden
from app.model.records import PUSH_REF_PATTERN, is_push_ref
from app.push.origin import origin_allowed

_CURSOR: Final = re.compile(r"[0-9]{1,18}")


def check_origin(headers: Mapping[str, str], allowed: tuple[str, ...]) -> None:
    """Raise :class:`Forbidden` unless :func:`~app.push.origin.origin_allowed`."""
    if not origin_allowed(headers, allowed):
        raise Forbidden("cross-site push connections are not allowed from this Origin")


def push_ref(value: str | None) -> str:
    """The validated ``pushRef`` query parameter (:data:`~app.model.records.PUSH_REF_PATTERN`)."""
    if value is None or not is_push_ref(value):
        raise BadRequest(f"the query parameter pushRef must match {PUSH_REF_PATTERN}")
    return value


def cursor(value: str | None, name: str) -> int | None:
    """A resume cursor (``Last-Event-ID``, ``lastEventId``, ``after``): a number ≥ 0 or None."""
    if value is None or value == "":
        return None
    if not _CURSOR.fullmatch(value.strip()):
        raise BadRequest(f"{name} must be a non-negative integer")
    return int(value)


def accepts_event_stream(accept: str | None) -> bool:
    """False only when ``Accept`` is given and rules out ``text/event-stream``."""
    if not accept:
        return True
    types = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    return bool(types & {"text/event-stream", "text/*", "*/*"})
