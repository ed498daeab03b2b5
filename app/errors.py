"""The exception tree, and the one place it maps to HTTP statuses and error codes.

    GraphpushError                 500 internal_error
    ├── BadRequest                 400 bad_request
    │   └── UnsupportedMediaType   415 unsupported_media_type
    ├── Unauthorized               401 unauthorized        (WebSocket: close 4401)
    │   └── TokenRejected          401 token_rejected      (WebSocket: close 1008)
    ├── Forbidden                  403 forbidden           (WebSocket: close 1008)
    ├── NotFound                   404 not_found
    ├── NotAcceptable              406 not_acceptable
    ├── Conflict                   409 conflict
    │   ├── IllegalTransition      409 illegal_transition
    │   └── ConcurrencyConflict    409 concurrency_conflict
    ├── PayloadTooLarge            413 payload_too_large
    ├── ValidationFailed           422 validation_failed   (``details``: every problem)
    │   ├── InvalidIdempotencyKey  422 invalid_idempotency_key
    │   ├── IdempotencyKeyReused   422 idempotency_key_reused
    │   ├── WebhookUrlRefused      422 webhook_url_refused
    │   └── RetryFromNodeUnsupported  422 retry_from_node_unsupported
    ├── QueueFull                  503 queue_full          (``Retry-After``)
    └── BackendUnavailable         503 backend_unavailable (``Retry-After``: Redis or
                                                            PostgreSQL does not answer, or
                                                            the SQLite store cannot write)

:mod:`app.http.errors` renders them: the JSON error body of SPEC §3 for HTTP, and the close
code that refuses a push WebSocket (1008 for any refusal but 401).

Node failures inside a run are not exceptions of this tree: they end the run with status
``error`` and travel in push messages (see :mod:`app.executions.node_errors`); a node raises
:class:`NodeFailure` to fail with a message of its own.
"""

from __future__ import annotations

from typing import Any, ClassVar


class GraphpushError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(GraphpushError):
    status = 400
    code = "bad_request"


class UnsupportedMediaType(BadRequest):
    status = 415
    code = "unsupported_media_type"


class Unauthorized(GraphpushError):
    status = 401
    code = "unauthorized"


class TokenRejected(Unauthorized):
    """A scoped token (SPEC §11) that is expired, forged or malformed."""

    code = "token_rejected"


class Forbidden(GraphpushError):
    """Authenticated, but not allowed: a cross-site Origin, or an action or run outside a
    scoped token (SPEC §5.5, §11)."""

    status = 403
    code = "forbidden"


class NotFound(GraphpushError):
    status = 404
    code = "not_found"


class NotAcceptable(GraphpushError):
    """A plain GET of ``/agents/push`` whose ``Accept`` rules out ``text/event-stream``."""

    status = 406
    code = "not_acceptable"


class Conflict(GraphpushError):
    status = 409
    code = "conflict"


class IllegalTransition(Conflict):
    code = "illegal_transition"


class ConcurrencyConflict(Conflict):
    """A run with the same concurrency key is active and the strategy is ``reject``."""

    code = "concurrency_conflict"

    @classmethod
    def taken(cls, key: str, holder: str) -> ConcurrencyConflict:
        """The 409 for a run whose ``key`` the unfinished run ``holder`` has."""
        return cls(
            f"a run with concurrency_key {key!r} is not finished",
            [problem("concurrency_key", f"taken by execution {holder}")],
        )


class PayloadTooLarge(GraphpushError):
    status = 413
    code = "payload_too_large"


class ValidationFailed(GraphpushError):
    """``details`` is a list of ``{"path": "nodes[3].parameters.ms", "message": ...}``."""

    status = 422
    code = "validation_failed"


class InvalidIdempotencyKey(ValidationFailed):
    code = "invalid_idempotency_key"


class IdempotencyKeyReused(ValidationFailed):
    """The key was first used with another request (SPEC §10)."""

    code = "idempotency_key_reused"


class WebhookUrlRefused(ValidationFailed):
    """A webhook URL that is not http(s), or is a literal refused address (SPEC §11)."""

    code = "webhook_url_refused"


class RetryFromNodeUnsupported(ValidationFailed):
    """A registered Python graph is retried from its start only (SPEC §9)."""

    code = "retry_from_node_unsupported"


class QueueFull(GraphpushError):
    status = 503
    code = "queue_full"
    retry_after_s: ClassVar[int] = 1


class BackendUnavailable(GraphpushError):
    status = 503
    code = "backend_unavailable"
    retry_after_s: ClassVar[int] = 1


def problem(path: str, message: str) -> dict[str, str]:
    """One entry of :class:`ValidationFailed` details."""
    return {"path": path, "message": message}


class NodeFailure(Exception):
    """Raised by a node to fail its run with a message (and optional description)."""

    def __init__(self, message: str, description: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.description = description
