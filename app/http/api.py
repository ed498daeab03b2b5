"""The REST API (SPEC §3): JSON in and out, every error as ``{"error": {...}}``."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from app.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, ValidationFailed, problem
from app.http.auth import authenticate
from app.http.bodies import execution_dto, run_accepted
from app.messages import encoder
from app.model.records import ExecutionQuery, JsonObject
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


class ResumeBody(msgspec.Struct, forbid_unknown_fields=True):
    value: Any = None


async def read_body(request: Request) -> bytes:
    """The request body, refusing what is over ``max_body_bytes`` (413) or not JSON (415)."""
    limit = runtime(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is over the {limit}-byte limit")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"the body is over the {limit}-byte limit")
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if body.strip() and content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedMediaType(f"expected application/json, got {content_type}")
    return bytes(body)


def decode_json(body: bytes, type_: type[Any]) -> Any:
    """Decode ``body`` as ``type_``: malformed JSON is 400; a schema mismatch is 422 naming
    every problem at its path (``input``, ``push_ref``, an unknown field's name)."""
    try:
        raw = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise BadRequest(f"malformed JSON: {exc}") from None
    try:
        return msgspec.convert(raw, type_)
    except msgspec.ValidationError:
        # Walked only on failure: listing every problem costs ~100x a convert (it reads the
        # Structs' fields each time), which was a tenth of POST /run's CPU.
        problems = check_value(raw, type_, "")
        if problems:
            raise ValidationFailed("the body does not match its schema", problems) from None
        raise


def _owner(request: Request) -> str | None:
    return authenticate(request, runtime(request).settings)


def _page_query(request: Request, **fixed: str | None) -> ExecutionQuery:
    params = request.query_params
    problems, values = [], {}
    for name, low, high, default in (("limit", 1, 200, 20), ("offset", 0, 1 << 62, 0)):
        raw = params.get(name)
        if raw is None:
            values[name] = default
        elif not raw.isdigit() or not low <= int(raw) <= high:
            problems.append(problem(name, f"expected an integer from {low} to {high}"))
        else:
            values[name] = int(raw)
    status = params.get("status") or None
    if status is not None and status not in ExecutionStatus.__members__.values():
        problems.append(problem("status", f"unknown status {status!r}"))
    if problems:
        raise ValidationFailed("bad query parameters", problems)
    workflow_id = fixed.get("workflow_id", params.get("workflow_id") or None)
    return ExecutionQuery(
        workflow_id=workflow_id,
        status=ExecutionStatus(status) if status else None,
        owner=_owner(request),
        limit=values["limit"],
        offset=values["offset"],
    )


# ---- workflows ------------------------------------------------------------------------


async def create_workflow(request: Request) -> Response:
    _owner(request)
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
    _owner(request)
    items = await runtime(request).workflows.list_all()
    return JSONResponse({"items": items, "total": len(items)})


async def workflow(request: Request) -> Response:
    _owner(request)
    workflows = runtime(request).workflows
    workflow_id = request.path_params["workflow_id"]
    if request.method == "GET":
        return JSONResponse(await workflows.get(workflow_id))
    if request.method == "PUT":
        return JSONResponse(await workflows.update(workflow_id, await _json_body(request)))
    await workflows.delete(workflow_id)
    return Response(status_code=204)


async def run_workflow(request: Request) -> Response:
    owner = _owner(request)
    body = await read_body(request)
    run = decode_json(body, RunBody) if body.strip() else RunBody()
    record = await runtime(request).service.queue_manual_execution(
        request.path_params["workflow_id"],
        input=run.input,
        push_ref=run.push_ref or request.headers.get("push-ref"),
        owner=owner,
    )
    return JSONResponse(run_accepted(record), status_code=202)


async def workflow_executions(request: Request) -> Response:
    workflow_id = request.path_params["workflow_id"]
    query = _page_query(request, workflow_id=workflow_id)
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
    return await _page(request, _page_query(request))


async def get_execution(request: Request) -> Response:
    record = await runtime(request).service.get_execution(
        request.path_params["execution_id"], _owner(request)
    )
    include = request.query_params.get("include_data") in ("1", "true")
    return JSONResponse(execution_dto(record, include_data=include))


async def cancel_execution(request: Request) -> Response:
    record = await runtime(request).service.cancel_execution(
        request.path_params["execution_id"], _owner(request)
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
    owner = _owner(request)
    body = await read_body(request)
    resume = decode_json(body, ResumeBody) if body.strip() else ResumeBody()
    record = await runtime(request).service.resume_execution(
        request.path_params["execution_id"], resume.value, owner
    )
    return JSONResponse(run_accepted(record), status_code=202)


async def execution_events(request: Request) -> Response:
    raw = request.query_params.get("after", "0")
    if not raw.isdigit():
        raise ValidationFailed(
            "bad query parameters", [problem("after", "expected an integer >= 0")]
        )
    execution_id = request.path_params["execution_id"]
    events = await runtime(request).service.read_events(execution_id, int(raw), _owner(request))
    items = [{"seq": e.seq, "type": e.type, "message": msgspec.Raw(e.payload)} for e in events]
    return JSONResponse(
        {
            "execution_id": execution_id,
            "items": items,
            "last_seq": events[-1].seq if events else int(raw),
        }
    )


# ---- operations -----------------------------------------------------------------------


async def healthz(request: Request) -> Response:
    """Liveness: 200 while the process answers, also when its store cannot write (a restart
    frees no disk and loses the writes held for retry). ``{"status": "ok"}``, or
    ``{"status": "degraded", "store": {...}}`` saying why (docs/deploy.md, *Faults*)."""
    health = runtime(request).health
    if health.writable and health.checkpointing:
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": "degraded", "store": health.report()})


async def metrics(request: Request) -> Response:
    rt = runtime(request)
    return PlainTextResponse(
        rt.service.metrics_text() + rt.hub.metrics_text() + rt.health.metrics_text()
    )


def api_routes() -> list[BaseRoute]:
    return [
        Route("/agents/workflows", create_workflow, methods=["POST"]),
        Route("/agents/workflows", list_workflows, methods=["GET"]),
        Route("/agents/workflows/{workflow_id}", workflow, methods=["GET", "PUT", "DELETE"]),
        Route("/agents/workflows/{workflow_id}/run", run_workflow, methods=["POST"]),
        Route("/agents/workflows/{workflow_id}/executions", workflow_executions, methods=["GET"]),
        Route("/agents/executions", list_executions, methods=["GET"]),
        Route("/agents/executions/{execution_id}", get_execution, methods=["GET"]),
        Route("/agents/executions/{execution_id}/cancel", cancel_execution, methods=["POST"]),
        Route("/agents/executions/{execution_id}/resume", resume_execution, methods=["POST"]),
        Route("/agents/executions/{execution_id}/events", execution_events, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
