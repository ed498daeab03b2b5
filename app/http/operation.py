"""A REST operation declared once: what it reads and what it answers.

An :class:`Operation` names its request body (a msgspec Struct), its query parameters with
their limits, the request headers it reads, its success :class:`Answer` (status and body
Struct) and the errors it may raise (with ``Retry-After`` where they carry one). Its
:meth:`~Operation.endpoint` reads the request through that declaration and hands the
handler a decoded :class:`Call`; the handler returns the success body, which is encoded as
declared.
:mod:`app.http.openapi` documents the same declarations, so the document cannot drift.

Error answers are not rendered here: the handler (or the reading) raises an exception of
:mod:`app.errors` and the app's one renderer turns it into the SPEC §3 error body.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import msgspec
from msgspec.json import schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.errors import (
    BadRequest,
    GraphpushError,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from app.http.auth import authenticate
from app.http.params import QueryReader
from app.messages import encoder
from app.model.cursor import MAX_CURSOR, parse_integer
from app.model.ids import ID_PATTERN, Identifier
from app.runtime import runtime
from app.workflows.checks import check_value

JsonObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Header:
    """A request header an operation reads, or a response header an answer carries."""

    name: str
    description: str
    schema: JsonObject = field(default_factory=lambda: {"type": "string"})


#: The ``push-ref`` header of the routes that start a run (the body's ``push_ref`` wins).
PUSH_REF_HEADER: Final = Header(
    "push-ref", "the pushRef to send the run's messages to (or push_ref)", schema(Identifier)
)


#: The ``Idempotency-Key`` header of the routes that start a run (SPEC §10).
IDEMPOTENCY_KEY: Final = Header(
    "Idempotency-Key",
    "the same key (from the same API key) within idempotency_ttl_s answers the first 202 "
    "again and starts nothing",
    {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
)
#: Set on the 202 that repeats the first answer to an ``Idempotency-Key``.
IDEMPOTENT_REPLAYED: Final = Header(
    "Idempotent-Replayed", "true when this is the first answer, replayed", {"enum": ["true"]}
)


@dataclass(frozen=True, slots=True)
class Answer:
    """The success answer: its status and body type (None: no body)."""

    status: int
    description: str
    body: Any = None
    media_type: str = "application/json"
    headers: tuple[Header, ...] = ()


@dataclass(frozen=True, slots=True)
class Query:
    """One query parameter, read through :class:`~app.http.params.QueryReader`."""

    name: str
    description: str
    kind: Literal["integer", "choice", "identifier", "flag"]
    required: bool = False
    default: int = 0
    low: int = 0
    high: int = MAX_CURSOR
    choices: tuple[str, ...] = ()

    def read(self, reader: QueryReader) -> Any:
        match self.kind:
            case "integer":
                return reader.integer(self.name, self.default, low=self.low, high=self.high)
            case "choice":
                return reader.choice(self.name, self.choices)
            case "identifier":
                return reader.identifier(self.name)
        return reader.flag(self.name)

    def schema(self) -> JsonObject:
        """The JSON Schema of the values this parameter accepts."""
        match self.kind:
            case "integer":
                bounds = {"minimum": self.low, "maximum": self.high}
                return {"type": "integer", **bounds, "default": self.default}
            case "choice":  # empty is the same as absent: no filter
                return {"type": "string", "enum": [*self.choices, ""]}
            case "identifier" if self.required:
                return {"type": "string", "pattern": f"^{ID_PATTERN}$"}
            case "identifier":  # empty is the same as absent
                return {"type": "string", "pattern": f"^({ID_PATTERN})?$"}
        return {"type": "string", "description": "1 or true: yes; anything else: no"}


@dataclass(frozen=True, slots=True)
class Body:
    """A JSON request body: documented as ``schema``, decoded as ``decode_as`` (default the
    same) when present. ``decode_as=JsonObject`` hands the handler the object as sent, for a
    service that validates it against ``schema`` itself (and names every problem)."""

    schema: Any
    required: bool = False
    decode_as: Any = None


@dataclass(frozen=True, slots=True)
class Call:
    """What the endpoint read for the handler."""

    request: Request
    #: The API key's owner id; None when keys are off or the operation takes none.
    owner: str | None
    query: Mapping[str, Any]
    #: The decoded body; None when the body is absent and not required.
    body: Any

    def path(self, name: str) -> str:
        return str(self.request.path_params[name])


@dataclass(frozen=True, slots=True)
class Reply:
    """A success body (a Struct, JSON-ready builtins, or JSON bytes) with response headers
    (those its :class:`Answer` declares)."""

    content: Any
    headers: Mapping[str, str] | None = None


Handler = Callable[[Call], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Operation:
    """A declared route; made by :func:`operation` from its handler."""

    method: str
    path: str
    handler: Handler
    answer: Answer
    errors: tuple[type[GraphpushError], ...] = ()
    body: Body | None = None
    query: tuple[Query, ...] = ()
    headers: tuple[Header, ...] = ()
    #: Takes an API key when keys are configured (SPEC §5.5).
    auth: bool = True
    tag: str = "executions"

    @property
    def name(self) -> str:
        """The OpenAPI ``operationId`` and the Starlette route name: the handler's name."""
        return self.handler.__name__

    @property
    def summary(self) -> str:
        return (self.handler.__doc__ or self.name).strip().split("\n\n")[0]

    @property
    def description(self) -> str:
        return inspect.cleandoc(self.handler.__doc__ or "").partition("\n\n")[2]

    def error_types(self) -> list[type[GraphpushError]]:
        """Every error this operation can answer: its own and those of what it reads."""
        implied: list[type[GraphpushError]] = [Unauthorized] if self.auth else []
        if self.body is not None:
            implied += [BadRequest, UnsupportedMediaType, PayloadTooLarge, ValidationFailed]
        if self.query:
            implied.append(ValidationFailed)
        return list(dict.fromkeys([*implied, *self.errors]))

    def route(self) -> Route:
        return Route(self.path, self.endpoint, methods=[self.method], name=self.name)

    async def endpoint(self, request: Request) -> Response:
        owner = authenticate(request, runtime(request).settings) if self.auth else None
        reader = QueryReader(request.query_params)
        query = {q.name: q.read(reader) for q in self.query}
        reader.check()
        body = await self._read_body(request) if self.body is not None else None
        return self.respond(await self.handler(Call(request, owner, query, body)))

    async def _read_body(self, request: Request) -> Any:
        assert self.body is not None
        raw = await read_body(request)
        if not raw.strip():
            if self.body.required:
                raise BadRequest("a JSON body is required")
            return None
        return decode_json(raw, self.body.decode_as or self.body.schema)

    def respond(self, result: Any) -> Response:
        """``result`` (or a :class:`Reply`'s content) as the declared success answer."""
        reply = result if isinstance(result, Reply) else Reply(result)
        answer, content = self.answer, reply.content
        if answer.body is None:
            return Response(status_code=answer.status, headers=reply.headers)
        if isinstance(content, msgspec.Struct) and not isinstance(content, answer.body):
            raise TypeError(f"{self.name} answers {answer.body}, not {type(content)}")
        if isinstance(content, bytes):
            payload = content
        else:
            payload = content.encode() if isinstance(content, str) else encoder.encode(content)
        return Response(payload, answer.status, reply.headers, answer.media_type)


def operation(
    method: str, path: str, answer: Answer, **options: Any
) -> Callable[[Handler], Operation]:
    """Declare ``handler`` as the operation ``method path`` (options: the fields of
    :class:`Operation`); its docstring's first paragraph is the summary, the rest the
    description."""

    def declare(handler: Handler) -> Operation:
        return Operation(method, path, handler, answer, **options)

    return declare


async def read_body(request: Request) -> bytes:
    """The request body, refusing what is over ``max_body_bytes`` (413) or not JSON (415)."""
    limit = runtime(request).settings.max_body_bytes
    declared = parse_integer(request.headers.get("content-length", ""))
    if declared is not None and declared > limit:
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


#: How deep a body's arrays and objects may nest (the body itself is level 1). A value is
#: encoded, decoded and copied recursively wherever it goes; nested much deeper, one that was
#: accepted could later fail to be read back, and break every listing that includes it.
MAX_JSON_DEPTH = 100


def decode_json(body: bytes, type_: Any) -> Any:
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
