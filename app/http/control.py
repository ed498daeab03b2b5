"""Run control over REST beyond one run's cancel and resume (SPEC §9): retry (and fork) a
finished run, and cancel many runs at once. Bodies, errors and auth as in
:mod:`app.http.api`."""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from app.http.api import JSONResponse, decode_json, key_owner, read_body
from app.http.bodies import CancelFilter, RetryBody
from app.http.idempotency import accepted_body, accepted_response, idempotency
from app.http.params import EXECUTION_PATH
from app.model.records import ExecutionRecord
from app.model.status import ExecutionStatus
from app.runtime import runtime


async def retry_execution(request: Request) -> Response:
    owner = key_owner(request)  # a retry starts a run: a scoped token cannot
    body = await read_body(request)
    retry = decode_json(body, RetryBody) if body.strip() else RetryBody()
    push_ref = retry.push_ref or request.headers.get("push-ref")
    service = runtime(request).service

    def build() -> Awaitable[ExecutionRecord]:
        return service.new_retry(
            request.path_params["execution_id"],
            from_node=retry.from_node,
            saved=retry.workflow == "saved",
            state=retry.state,
            input=retry.input,
            push_ref=push_ref,
            owner=owner,
        )

    # An Idempotency-Key makes a retried retry safe, as on POST .../run (SPEC §10).
    answer, replayed = await service.accept(
        build,
        accepted_body(request, owner),
        owner=owner,
        idempotency=idempotency(request, retry, push_ref),
    )
    return accepted_response(answer, replayed)


async def cancel_executions(request: Request) -> Response:
    owner = key_owner(request)  # it reaches every run of the key, so a token cannot
    cancel = decode_json((await read_body(request)).strip() or b"{}", CancelFilter)
    canceled = await runtime(request).service.cancel_executions(
        workflow_id=cancel.workflow_id,
        statuses=None if cancel.status is None else [ExecutionStatus(s) for s in cancel.status],
        owner=owner,
    )
    return JSONResponse({"canceled": canceled}, status_code=202)


def control_routes() -> list[BaseRoute]:
    """Matched after :func:`app.http.api.api_routes`: ``/agents/executions/cancel`` (POST)
    wins over the execution route, which takes GET only."""
    return [
        Route("/agents/executions/cancel", cancel_executions, methods=["POST"]),
        Route(f"{EXECUTION_PATH}/retry", retry_execution, methods=["POST"]),
    ]
