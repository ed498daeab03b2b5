"""The OpenAPI 3.1 document of the REST API (SPEC §12), generated from the declarations.

Everything comes from the :class:`~app.http.operation.Operation` declarations and the
Structs they name (through ``msgspec.json.schema_components``): paths, parameters with
their limits, request bodies, the success answer of each operation and every error answer
it can give (the SPEC §3 error body, with ``Retry-After`` where the error carries one).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from importlib.metadata import version
from typing import Any, Final

import msgspec

from app.errors import GraphpushError
from app.http.errors import ErrorBody
from app.http.operation import Header, Operation, Query
from app.http.streams import EVENT_STREAMS, EventStreamRoute
from app.model.ids import ID_PATTERN

JsonObject = dict[str, Any]
REF: Final = "#/components/schemas/{name}"
#: ``{name}`` or ``{name:convertor}`` in a Starlette path, and what each convertor matches.
PATH_PARAMETER: Final = re.compile(r"{(\w+)(?::(\w+))?}")
PATH_SCHEMAS: Final = {
    "": {"type": "string"},
    "id": {"type": "string", "pattern": f"^{ID_PATTERN}$"},
}

DESCRIPTION: Final = """\
Run LangGraph workflows and follow every step. The push channels (`/agents/push` over
WebSocket and SSE, `/agents/executions/{id}/stream`) and their messages are described by
the AsyncAPI document at `/asyncapi.yaml`. Every error answer has the body
`{"error": {"code", "message", "details"}}`."""

#: API keys are optional (SPEC §5.5): ``{}`` lets a call through when none are configured.
SECURITY: Final[list[dict[str, list[str]]]] = [{}, {"bearer": []}, {"token": []}, {"cookie": []}]
SECURITY_SCHEMES: Final = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key, or a scoped token from POST /agents/tokens",
    },
    "token": {"type": "apiKey", "in": "query", "name": "token"},
    "cookie": {"type": "apiKey", "in": "cookie", "name": "graphpush-token"},
}
TAGS: Final = [
    {
        "name": "workflows",
        "description": "workflow definitions: nodes and their connections, as n8n draws them",
    },
    {"name": "executions", "description": "runs: start, follow, cancel, resume, history"},
    {"name": "push", "description": "event streams over SSE (their messages: /asyncapi.yaml)"},
    {"name": "tokens", "description": "scoped browser tokens: read, cancel, resume some runs"},
    {"name": "operations", "description": "health, readiness and metrics"},
]


def openapi_document(
    operations: Sequence[Operation], streams: Sequence[EventStreamRoute] = EVENT_STREAMS
) -> JsonObject:
    """The whole document for ``operations`` and the SSE routes ``streams``."""
    refs, components = msgspec.json.schema_components(_types(operations), ref_template=REF)
    schema_of = dict(zip(_types(operations), refs, strict=True))
    paths: dict[str, JsonObject] = {}
    for op in operations:
        path = PATH_PARAMETER.sub(r"{\1}", op.path)
        paths.setdefault(path, {})[op.method.lower()] = _operation(op, schema_of)
    for stream in streams:
        components.update(_body_definitions(stream, components))
        path = PATH_PARAMETER.sub(r"{\1}", stream.path)
        paths.setdefault(path, {})[stream.method.lower()] = _event_stream(stream, schema_of)
    return {
        "openapi": "3.1.0",
        "info": {"title": "graphpush", "version": version("graphpush"), "description": DESCRIPTION},
        "tags": TAGS,
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": SECURITY_SCHEMES},
    }


def _body_definitions(stream: EventStreamRoute, components: JsonObject) -> JsonObject:
    """The schemas a stream's body refers to (its ``$defs``), none named like another."""
    definitions: JsonObject = (stream.body or {}).get("$defs", {})
    if clash := set(definitions) & set(components):
        raise ValueError(f"{stream.name} body schemas clash with components: {sorted(clash)}")
    return definitions


def _types(operations: Iterable[Operation]) -> list[Any]:
    """Every body type the operations name, in a stable order, the error body last."""
    types: dict[Any, None] = {}
    for op in operations:
        if op.body is not None:
            types[op.body.schema] = None
        if op.answer.body is not None:
            types[op.answer.body] = None
    types[ErrorBody] = None
    return list(types)


def _operation(op: Operation, schema_of: dict[Any, JsonObject]) -> JsonObject:
    document: JsonObject = {
        "operationId": op.name,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": _parameters(op.path, op.query, op.headers),
        "responses": {**_success(op, schema_of), **_errors(op.error_types(), schema_of)},
    }
    if op.description:
        document["description"] = op.description
    if op.body is not None:
        content = {"application/json": {"schema": schema_of[op.body.schema]}}
        document["requestBody"] = {"required": op.body.required, "content": content}
    if op.access != "public":
        document["security"] = SECURITY
    return document


def _parameters(path: str, query: Iterable[Query], headers: Iterable[Header]) -> list[JsonObject]:
    in_path = [
        {"name": name, "in": "path", "required": True, "schema": PATH_SCHEMAS[convertor]}
        for name, convertor in PATH_PARAMETER.findall(path)
    ]
    in_query = [
        {
            "name": q.name,
            "in": "query",
            "description": q.description,
            "required": q.required,
            "schema": q.schema(),
        }
        for q in query
    ]
    in_headers = [
        {"name": h.name, "in": "header", "description": h.description, "schema": h.schema}
        for h in headers
    ]
    return [*in_path, *in_query, *in_headers]


def _event_stream(stream: EventStreamRoute, schema_of: dict[Any, JsonObject]) -> JsonObject:
    events = {
        "description": "an event stream: `id:` (the cursor) and `data:` lines, each `data:` a "
        f"message of the AsyncAPI channel `{stream.channel}` (/asyncapi.yaml)"
        if stream.channel
        else "an AG-UI event stream: `data:` lines, each an AG-UI event (RUN_STARTED first, "
        "RUN_FINISHED or RUN_ERROR last)",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
    document: JsonObject = {
        "operationId": stream.name,
        "summary": stream.summary,
        "tags": ["push"],
        "parameters": _parameters(stream.path, stream.query, stream.headers),
        "responses": {"200": events, **_errors(stream.errors, schema_of)},
        "security": SECURITY,
    }
    if stream.body is not None:
        body = {k: v for k, v in stream.body.items() if k != "$defs"}
        content = {"application/json": {"schema": body}}
        document["requestBody"] = {"required": True, "content": content}
    return document


def _success(op: Operation, schema_of: dict[Any, JsonObject]) -> JsonObject:
    answer = op.answer
    response: JsonObject = {"description": answer.description}
    if answer.body is not None:
        response["content"] = {answer.media_type: {"schema": schema_of[answer.body]}}
    if answer.headers:
        response["headers"] = _headers(answer.headers)
    return {str(answer.status): response}


def _errors(errors: Iterable[type[GraphpushError]], schema_of: dict[Any, JsonObject]) -> JsonObject:
    """One answer per status, naming the error codes it can carry."""
    by_status: dict[int, list[type[GraphpushError]]] = {}
    for error in errors:
        by_status.setdefault(error.status, []).append(error)
    responses: JsonObject = {}
    for status, kinds in sorted(by_status.items()):
        codes = ", ".join(f"`{kind.code}`" for kind in kinds)
        response: JsonObject = {
            "description": f"error: {codes}",
            "content": {"application/json": {"schema": schema_of[ErrorBody]}},
        }
        if any(hasattr(kind, "retry_after_s") for kind in kinds):
            response["headers"] = _headers((RETRY_AFTER,))
        responses[str(status)] = response
    return responses


RETRY_AFTER: Final = Header(
    "Retry-After", "seconds to wait before trying again", {"type": "integer", "minimum": 0}
)


def _headers(headers: Iterable[Header]) -> JsonObject:
    return {h.name: {"description": h.description, "schema": h.schema} for h in headers}
