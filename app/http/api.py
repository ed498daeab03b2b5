"""The REST API (SPEC §3): JSON in and out, every error as ``{"error": {...}}``.

Here the routes of runs (list, read, cancel, resume, their events and webhooks), history
pruning and scoped tokens; the workflows' in :mod:`app.http.workflows`, run control's in
:mod:`app.http.control`, the operator's in :mod:`app.http.operations`. Requests are read
by :mod:`app.http.requests`."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from app.clock import iso
from app.errors import (
    Forbidden,
)
from app.http.auth import TokenRequest, mint
from app.http.bodies import JSONResponse, execution_dto, run_accepted, webhook_dto
from app.http.params import EXECUTION_PATH, WORKFLOW_PATH, QueryReader
from app.http.requests import caller_of, decode_json, key_owner, read_body
from app.model.access import Action, Caller
from app.model.records import ExecutionQuery, JsonObject
from app.model.status import ExecutionStatus
from app.runtime import runtime


class ResumeBody(msgspec.Struct, forbid_unknown_fields=True):
    value: Any = None


class PruneBody(msgspec.Struct, forbid_unknown_fields=True):
    dry_run: bool = False


async def _owner_for(request: Request, action: Action) -> str | None:
    """The caller's owner, once it may do ``action`` on the path's execution."""
    caller = caller_of(request)
    execution_id = request.path_params["execution_id"]
    await runtime(request).service.authorize(execution_id, caller, action)
    return caller.owner


def _listed_workflow(caller: Caller, workflow_id: str | None) -> str | None:
    """The workflow a listing of runs is limited to: a token limited to some runs lists
    only its workflow's (and cannot list when it names executions only)."""
    scope = caller.scope
    caller.require_action("read")
    if scope is None or scope.unlimited:
        return workflow_id
    if scope.workflow_id is None:
        raise Forbidden("a token limited to execution ids cannot list runs")
    caller.require_workflow(workflow_id or scope.workflow_id)
    return scope.workflow_id


def _page_query(request: Request, caller: Caller, workflow_id: str | None) -> ExecutionQuery:
    """``?status=&limit=&offset=`` (and ``workflow_id=`` unless the path fixes it)."""
    query = QueryReader(request.query_params)
    status = query.choice("status", ExecutionStatus.__members__.values())
    page = ExecutionQuery(
        workflow_id=_listed_workflow(caller, workflow_id or query.identifier("workflow_id")),
        status=ExecutionStatus(status) if status else None,
        owner=caller.owner,
        retry_of=query.identifier("retry_of"),
        limit=query.integer("limit", 20, low=1, high=200),
        offset=query.integer("offset", 0),
    )
    query.check()
    return page


async def workflow_executions(request: Request) -> Response:
    workflow_id = request.path_params["workflow_id"]
    query = _page_query(request, caller_of(request), workflow_id)
    await runtime(request).workflows.get(workflow_id)
    return await _page(request, query)


# ---- executions -----------------------------------------------------------------------


async def _page(request: Request, query: ExecutionQuery) -> Response:
    page = await runtime(request).service.list_executions(query)
    items: list[JsonObject] = [execution_dto(r) for r in page.items]
    return JSONResponse(
        {"items": items, "total": page.total, "limit": query.limit, "offset": query.offset}
    )


async def list_executions(request: Request) -> Response:
    return await _page(request, _page_query(request, caller_of(request), None))


async def get_execution(request: Request) -> Response:
    owner = await _owner_for(request, "read")
    record = await runtime(request).service.get_execution(
        request.path_params["execution_id"], owner
    )
    include = QueryReader(request.query_params).flag("include_data")
    return JSONResponse(execution_dto(record, include_data=include))


async def cancel_execution(request: Request) -> Response:
    owner = await _owner_for(request, "cancel")
    record = await runtime(request).service.cancel_execution(
        request.path_params["execution_id"], owner
    )
    return JSONResponse(
        {
            "execution_id": record.id,
            "status": "canceling",
            "status_url": execution_dto(record)["links"]["self"],
        },
        status_code=202,
    )


async def resume_execution(request: Request) -> Response:
    owner = await _owner_for(request, "resume")
    body = await read_body(request)
    resume = decode_json(body, ResumeBody) if body.strip() else ResumeBody()
    record = await runtime(request).service.resume_execution(
        request.path_params["execution_id"], resume.value, owner
    )
    return JSONResponse(run_accepted(record), status_code=202)


async def execution_events(request: Request) -> Response:
    owner = await _owner_for(request, "read")
    query = QueryReader(request.query_params)
    after = query.integer("after", 0)
    query.check()
    execution_id = request.path_params["execution_id"]
    events = await runtime(request).service.read_events(execution_id, after, owner)
    items = [{"seq": e.seq, "type": e.type, "message": msgspec.Raw(e.payload)} for e in events]
    return JSONResponse(
        {
            "execution_id": execution_id,
            "items": items,
            "last_seq": events[-1].seq if events else after,
        }
    )


async def execution_webhooks(request: Request) -> Response:
    """``GET /agents/executions/{id}/webhooks``: the run's deliveries and their attempts."""
    owner = await _owner_for(request, "read")
    execution_id = request.path_params["execution_id"]
    deliveries = await runtime(request).service.list_webhooks(execution_id, owner)
    return JSONResponse({"items": [webhook_dto(d) for d in deliveries]})


# ---- scoped tokens (SPEC §11) -----------------------------------------------------------


async def create_token(request: Request) -> Response:
    """``POST /agents/tokens``: a scoped browser token, minted with an API key."""
    owner = key_owner(request)
    body = await read_body(request)
    token_request = decode_json(body if body.strip() else b"{}", TokenRequest)
    secret = runtime(request).settings.token_secret
    assert secret is not None, "the lifespan sets token_secret"
    token, expires_at = mint(token_request, owner, secret)
    return JSONResponse({"token": token, "expires_at": iso(expires_at * 1000)}, status_code=201)


async def prune_executions(request: Request) -> Response:
    """Prune the history now, as the timer does (SPEC §10); ``dry_run`` only counts."""
    key_owner(request)
    body = await read_body(request)
    prune = decode_json(body, PruneBody) if body.strip() else PruneBody()
    pruner = runtime(request).pruner
    assert pruner is not None, "the lifespan owns a pruner"
    pruned = await pruner.prune(dry_run=prune.dry_run)
    return JSONResponse({"pruned": pruned, "dry_run": prune.dry_run})


def api_routes() -> list[BaseRoute]:
    return [
        Route(f"{WORKFLOW_PATH}/executions", workflow_executions, methods=["GET"]),
        Route("/agents/executions", list_executions, methods=["GET"]),
        Route("/agents/executions/prune", prune_executions, methods=["POST"]),
        Route(EXECUTION_PATH, get_execution, methods=["GET"]),
        Route(f"{EXECUTION_PATH}/cancel", cancel_execution, methods=["POST"]),
        Route(f"{EXECUTION_PATH}/resume", resume_execution, methods=["POST"]),
        Route(f"{EXECUTION_PATH}/events", execution_events, methods=["GET"]),
        Route(f"{EXECUTION_PATH}/webhooks", execution_webhooks, methods=["GET"]),
        Route("/agents/tokens", create_token, methods=["POST"]),
    ]
