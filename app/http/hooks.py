"""Scoped browser tokens and a run's completion webhooks (SPEC §11)."""

from __future__ import annotations

from typing import Final

from app.clock import iso
from app.errors import NotFound
from app.http.auth import TokenRequest, mint
from app.http.bodies import webhook_dto
from app.http.operation import Answer, Body, Call, Operation, operation
from app.http.params import EXECUTION_PATH
from app.http.schemas import TokenIssued, WebhookList
from app.runtime import runtime


@operation(
    "POST",
    "/agents/tokens",
    Answer(201, "the signed token", TokenIssued),
    body=Body(TokenRequest, required=True),
    tag="tokens",
)
async def create_token(call: Call) -> TokenIssued:
    """Mint a scoped browser token: a few actions (read, cancel, resume) on some runs of
    this API key, for at most an hour.

    Limit it to `execution_ids` or to a `workflow_id`'s runs (neither: every run of the
    key). A page passes it as `Authorization: Bearer`, `?token=` or the `graphpush-token`
    cookie, on REST, push and the execution stream; it cannot be revoked, only expire.
    """
    secret = runtime(call.request).settings.token_secret
    assert secret is not None, "the lifespan sets token_secret"
    token, expires_at = mint(call.body, call.owner, secret)
    return TokenIssued(token=token, expires_at=iso(expires_at * 1000))


@operation(
    "GET",
    f"{EXECUTION_PATH}/webhooks",
    Answer(200, "the run's webhook deliveries, oldest first", WebhookList),
    errors=(NotFound,),
    access="read",
)
async def list_execution_webhooks(call: Call) -> WebhookList:
    """A run's completion webhooks: each message, its status and every attempt."""
    service = runtime(call.request).service
    deliveries = await service.list_webhooks(call.path("execution_id"), call.owner)
    return WebhookList(items=[webhook_dto(d) for d in deliveries])


#: The token and webhook routes (no path of theirs overlaps another's).
OPERATIONS: Final[tuple[Operation, ...]] = (create_token, list_execution_webhooks)
