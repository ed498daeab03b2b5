"""The REST API (SPEC §3): JSON in and out, every error as ``{"error": {...}}``."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from app.clock import iso
from app.errors import (
    BackendUnavailable,
    BadRequest,
    Forbidden,
    ValidationFailed,
)
from app.executions.admission import Strategy
from app.http.auth import TokenRequest, authenticate, mint
from app.http.bodies import execution_dto, run_accepted, webhook_dto
from app.http.body import read_json_body
from app.http.idempotency import accepted_body, accepted_response, idempotency
from app.http.params import EXECUTION_PATH, WORKFLOW_PATH, QueryReader
from app.messages import encoder
from app.metrics import prometheus
from app.model.access import Action, Caller
from app.model.records import ExecutionQuery, ExecutionRecord, JsonObject
from app.model.status import ExecutionStatus
from app.runtime import runtime
from app.workflows.checks import check_value


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return encoder.encode(content)


class RunBody(msgspec.Struct, forbid_unknown_fields=True):
    input: dict[str, Any] | None = None
    push_ref: str | None = None
    #: A URL for this run's completion webhooks (SPEC §11); wins over the workflow's.
    webhook: str | None = None
    #: SPEC §10: runs of one key (per API key) run one at a time; the strategy says what a
    #: new one does while an older one is unfinished.
    concurrency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | None = None
    multitask_strategy: Strategy = "enqueue"


class ResumeBody(msgspec.Struct, forbid_unknown_fields=True):
    value: Any = None


class PruneBody(msgspec.Struct, forbid_unknown_fields=True):
    dry_run: bool = False


async def read_body(request: Request) -> bytes:
    """The request body, refusing what is over ``max_body_bytes`` (413) or not JSON (415)."""
    return await read_json_body(request, runtime(request).settings.max_body_bytes)


#: How deep a body's arrays and objects may nest (the body itself is level 1). A value is
#: encoded, decoded and copied recursively wherever it goes; nested much deeper, one that was
#: accepted could later fail to be read back, and break every listing that includes it.
MAX_JSON_DEPTH = 100


def decode_json(body: bytes, type_: type[Any]) -> Any:
    """Decode ``body`` as ``type_``: malformed JSON or nesting deeper than
    :data:`MAX_JSON_DEPTH` is 400; a schema mismatch is 422 naming every problem at its path
    (``input``, ``push_ref``, an unknown field's name)."""
    try:
        raw = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise BadRequest(f"malformed JSON: {exc}") from None
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _deeper_than(raw, MAX_JSON_DEPTH):
        raise BadRequest(f"the JSON nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return msgspec.convert(raw, type_)
    except msgspec.ValidationError:
        # Walked only on failure: listing every problem costs ~100x a convert (it reads the
        # Structs' fields each time), which was a tenth of POST /run's CPU.
        problems = check_value(raw, type_, "")
        if problems:
            raise ValidationFailed("the body does not match its schema", problems) from None
        raise


def _deeper_than(value: Any, limit: int) -> bool:
    """Do ``value``'s arrays and objects nest deeper than ``limit``? (Iterative: a value
    too deep for recursion is the point.)"""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        container, depth = stack.pop()
        if depth > limit:
            return True
        children = container.values() if isinstance(container, dict) else container
        stack += [(c, depth + 1) for c in children if isinstance(c, dict | list)]
    return False


def _caller(request: Request) -> Caller:
    return authenticate(request, runtime(request).settings)


def key_owner(request: Request) -> str | None:
    """The caller's owner, for a call that needs an API key (a token is 403)."""
    caller = _caller(request)
    caller.require_key()
    return caller.owner


async def _owner_for(request: Request, action: Action) -> str | None:
    """The caller's owner, once it may do ``action`` on the path's execution."""
    caller = _caller(request)
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


# ---- workflows ------------------------------------------------------------------------


async def create_workflow(request: Request) -> Response:
    key_owner(request)
    workflow = await runtime(request).workflows.create(await _json_body(request))
    return JSONResponse(workflow, status_code=201)


async def _json_body(request: Request) -> JsonObject:
    """The body as a JSON object, decoded once (the workflow parser takes it as it is)."""
    body = await read_body(request)
    if not body.strip():
        raise BadRequest("a JSON body is required")
    decoded: JsonObject = decode_json(body, dict[str, Any])
    return decoded


async def list_workflows(request: Request) -> Response:
    caller = _caller(request)
    caller.require_action("read")
    items = await runtime(request).workflows.list_all()
    if caller.scope is not None:
        items = [w for w in items if caller.scope.covers_workflow(str(w.get("id")))]
    return JSONResponse({"items": items, "total": len(items)})


async def workflow(request: Request) -> Response:
    caller = _caller(request)
    workflows = runtime(request).workflows
    workflow_id = request.path_params["workflow_id"]
    if request.method == "GET":
        caller.require_workflow(workflow_id)
        return JSONResponse(await workflows.get(workflow_id))
    caller.require_key()
    if request.method == "PUT":
        return JSONResponse(await workflows.update(workflow_id, await _json_body(request)))
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


async def workflow_executions(request: Request) -> Response:
    workflow_id = request.path_params["workflow_id"]
    query = _page_query(request, _caller(request), workflow_id)
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
    return await _page(request, _page_query(request, _caller(request), None))


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


# ---- operations -----------------------------------------------------------------------


async def healthz(request: Request) -> Response:
    """Liveness: 200 while the process answers, also when its store cannot write (a restart
    frees no disk and loses the writes held for retry). ``{"status": "ok"}``, or
    ``{"status": "degraded", "store": {...}}`` saying why (docs/deploy.md)."""
    health = runtime(request).health
    if health.writable and health.checkpointing:
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": "degraded", "store": health.report()})


async def readyz(request: Request) -> Response:
    """200 while every shared backend (PostgreSQL, Redis) answers; 503 naming the ones that
    do not (``/healthz`` stays 200: the process itself is alive)."""
    checks = await runtime(request).readiness()
    if any(state != "ok" for state in checks.values()):
        raise BackendUnavailable("a backend is unavailable", details=checks)
    return JSONResponse({"status": "ready", "checks": checks})


async def metrics(request: Request) -> Response:
    rt = runtime(request)
    lag = prometheus(rt.loop_lag.gauges()) if rt.loop_lag else ""
    pruned = prometheus({}, rt.pruner.counters()) if rt.pruner else ""
    return PlainTextResponse(
        rt.service.metrics_text() + rt.hub.metrics_text() + rt.health.metrics_text() + lag + pruned
    )


def api_routes() -> list[BaseRoute]:
    return [
        Route("/agents/workflows", create_workflow, methods=["POST"]),
        Route("/agents/workflows", list_workflows, methods=["GET"]),
        Route(WORKFLOW_PATH, workflow, methods=["GET", "PUT", "DELETE"]),
        Route(f"{WORKFLOW_PATH}/run", run_workflow, methods=["POST"]),
        Route(f"{WORKFLOW_PATH}/executions", workflow_executions, methods=["GET"]),
        Route("/agents/executions", list_executions, methods=["GET"]),
        Route("/agents/executions/prune", prune_executions, methods=["POST"]),
        Route(EXECUTION_PATH, get_execution, methods=["GET"]),
        Route(f"{EXECUTION_PATH}/cancel", cancel_execution, methods=["POST"]),
        Route(f"{EXECUTION_PATH}/resume", resume_execution, methods=["POST"]),
        Route(f"{EXECUTION_PATH}/events", execution_events, methods=["GET"]),
        Route(f"{EXECUTION_PATH}/webhooks", execution_webhooks, methods=["GET"]),
        Route("/agents/tokens", create_token, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
