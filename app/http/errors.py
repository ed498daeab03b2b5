"""The one renderer of :mod:`app.errors`: the SPEC §3 error body for HTTP (REST and SSE
refusals alike), and the close code that refuses a push WebSocket.

:data:`EXCEPTION_HANDLERS` is what the app installs: the tree's errors with their status
(and ``Retry-After`` where they have one), Starlette's own HTTP errors (404, 405) in the
same body, and anything else as a logged 500 that reveals nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app.errors import GraphpushError, TokenRejected, Unauthorized
from app.messages import encoder
from app.push.connection import CloseCode

log = logging.getLogger("graphpush")

#: Starlette's own errors by status; any other status is ``http_error``.
_HTTP_CODES: Final = {404: "not_found", 405: "method_not_allowed"}


def error_body(code: str, message: str, details: Any = None) -> bytes:
    """``{"error": {"code", "message", "details"}}`` as JSON bytes."""
    body = {"error": {"code": code, "message": message, "details": details}}
    return encoder.encode(body)


def render(
    code: str, message: str, status: int, details: Any = None, headers: Any = None
) -> Response:
    return Response(error_body(code, message, details), status, headers, "application/json")


def error_response(exc: GraphpushError) -> Response:
    """``exc`` with its status, error body and, when it has one, ``Retry-After``."""
    retry_after = getattr(exc, "retry_after_s", None)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return render(exc.code, exc.message, exc.status, exc.details, headers)


def close_code(exc: GraphpushError) -> int:
    """The WebSocket close code that refuses a push connection for ``exc``."""
    if isinstance(exc, Unauthorized) and not isinstance(exc, TokenRejected):
        return CloseCode.UNAUTHORIZED  # a scoped token's refusal is 1008 (SPEC §11)
    return CloseCode.POLICY_VIOLATION


async def _graphpush_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GraphpushError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return render(code, str(exc.detail), exc.status_code, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return render("internal_error", "internal server error", 500)


Handler = Callable[[Request, Exception], Awaitable[Response]]

EXCEPTION_HANDLERS: Final[dict[Any, Handler]] = {
    GraphpushError: _graphpush_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}
