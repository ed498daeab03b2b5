"""The workflow routes of the REST API (SPEC §3): create, list, read, replace and delete a
workflow, and run it (under SPEC §10's run control). Bodies, errors and auth as in
:mod:`app.http.api`."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from app.executions.admission import Strategy
from app.http.bodies import JSONResponse
from app.http.idempotency import accepted_body, accepted_response, idempotency
from app.http.params import WORKFLOW_PATH
from app.http.requests import caller_of, decode_json, json_body, key_owner, read_body
from app.model.records import ExecutionRecord
from app.runtime import runtime


class RunBody(msgspec.Struct, forbid_unknown_fields=True):
    input: dict[str, Any] | None = None
    push_ref: str | None = None
    #: A URL for this run's completion webhooks (SPEC §11); wins over the workflow's.
    webhook: str | None = None
    #: SPEC §10: runs of one key (per API key) run one at a time; the strategy says what a
    #: new one does while an older one is unfinished.
    concurrency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | None = None
    multitask_strategy: Strategy = "enqueue"


async def create_workflow(request: Request) -> Response:
    key_owner(request)
    workflow = await runtime(request).workflows.create(await json_body(request))
    return JSONResponse(workflow, status_code=201)


async def list_workflows(request: Request) -> Response:
    caller = caller_of(request)
    caller.require_action("read")
    items = await runtime(request).workflows.list_all()
    if caller.scope is not None:
        items = [w for w in items if caller.scope.covers_workflow(str(w.get("id")))]
    return JSONResponse({"items": items, "total": len(items)})


async def workflow(request: Request) -> Response:
    caller = caller_of(request)
    workflows = runtime(request).workflows
    workflow_id = request.path_params["workflow_id"]
    if request.method == "GET":
        caller.require_workflow(workflow_id)
        return JSONResponse(await workflows.get(workflow_id))
    caller.require_key()
    if request.method == "PUT":
        return JSONResponse(await workflows.update(workflow_id, await json_body(request)))
    await workflows.delete(workflow_id)
    return Response(status_code=204)


async def run_workflow(request: Request) -> Response:
    owner = key_owner(request)
    body = await read_body(request)
    run = decode_json(body, RunBody) if body.strip() else RunBody()
    push_ref = run.push_ref or request.headers.get("push-ref")
    service = runtime(request).service

    def build() -> Awaitable[ExecutionRecord]:
        workflow_id = request.path_params["workflow_id"]
        return service.new_run(
            workflow_id,
            input=run.input,
            push_ref=push_ref,
            owner=owner,
            concurrency_key=run.concurrency_key,
            webhook=run.webhook,
        )

    answer, replayed = await service.accept(
        build,
        accepted_body(request, owner),
        owner=owner,
        idempotency=idempotency(request, run, push_ref),
        strategy=run.multitask_strategy,
    )
    return accepted_response(answer, replayed)


def workflow_routes() -> list[BaseRoute]:
    return [
        Route("/agents/workflows", create_workflow, methods=["POST"]),
        Route("/agents/workflows", list_workflows, methods=["GET"]),
        Route(WORKFLOW_PATH, workflow, methods=["GET", "PUT", "DELETE"]),
        Route(f"{WORKFLOW_PATH}/run", run_workflow, methods=["POST"]),
    ]
