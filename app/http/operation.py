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
    BackendUnavailable,
    BadRequest,
    Forbidden,
    GraphpushError,
    IdempotencyKeyReused,
    InvalidIdempotencyKey,
    NotFound,
    PayloadTooLarge,
    QueueFull,
    TokenRejected,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from app.http.auth import authenticate
from app.http.params import QueryReader
from app.http.requests import decode_json, read_body
from app.messages import encoder
from app.model.access import Caller
from app.model.cursor import MAX_CURSOR
from app.model.ids import ID_PATTERN, Identifier
from app.runtime import runtime

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
#: The request headers of every route that starts a run.
RUN_START_HEADERS: Final = (PUSH_REF_HEADER, IDEMPOTENCY_KEY)
#: The errors of every route that starts a run, besides its own: what it starts from is not
#: found, its ``Idempotency-Key`` is refused, the queue is full or a backend is down.
RUN_START_ERRORS: Final[tuple[type[GraphpushError], ...]] = (
    NotFound,
    InvalidIdempotencyKey,
    IdempotencyKeyReused,
    QueueFull,
    BackendUnavailable,
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
    #: Who is calling: an API key's owner (None when keys are off) or a scoped token.
    caller: Caller
    query: Mapping[str, Any]
    #: The decoded body; None when the body is absent and not required.
    body: Any

    @property
    def owner(self) -> str | None:
        return self.caller.owner

    def path(self, name: str) -> str:
        return str(self.request.path_params[name])


@dataclass(frozen=True, slots=True)
class Reply:
    """A success body (a Struct, JSON-ready builtins, or JSON bytes) with response headers
    (those its :class:`Answer` declares)."""

    content: Any
    headers: Mapping[str, str] | None = None


Handler = Callable[[Call], Awaitable[Any]]

#: Who may call an operation (SPEC §5.5, §11). ``public``: no credential is read. ``key``: an
#: API key (a scoped token is 403). ``caller``: a key or a token, the handler limiting what a
#: token sees. ``workflow``: reading the path's workflow. ``read``, ``cancel``, ``resume``:
#: that action on the path's execution, which a token must cover.
Access = Literal["public", "key", "caller", "workflow", "read", "cancel", "resume"]


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
    access: Access = "key"
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
        public = self.access == "public"
        implied: list[type[GraphpushError]] = (
            [] if public else [Unauthorized, TokenRejected, Forbidden]
        )
        if self.body is not None:
            implied += [BadRequest, UnsupportedMediaType, PayloadTooLarge, ValidationFailed]
        if self.query:
            implied.append(ValidationFailed)
        return list(dict.fromkeys([*implied, *self.errors]))

    def route(self) -> Route:
        return Route(self.path, self.endpoint, methods=[self.method], name=self.name)

    async def endpoint(self, request: Request) -> Response:
        caller = await self._authorize(request)
        reader = QueryReader(request.query_params)
        query = {q.name: q.read(reader) for q in self.query}
        reader.check()
        body = await self._read_body(request) if self.body is not None else None
        return self.respond(await self.handler(Call(request, caller, query, body)))

    async def _authorize(self, request: Request) -> Caller:
        """The caller, once :attr:`access` allows the call (else 401, 403 or 404)."""
        if self.access == "public":
            return Caller(None)
        caller = authenticate(request, runtime(request).settings)
        match self.access:
            case "key":
                caller.require_key()
            case "workflow":
                caller.require_workflow(request.path_params["workflow_id"])
            case "read" | "cancel" | "resume":
                execution_id = request.path_params["execution_id"]
                await runtime(request).service.authorize(execution_id, caller, self.access)
        return caller

    async def _read_body(self, request: Request) -> Any:
        assert self.body is not None
        raw = await read_body(request)
        if not raw:  # no body at all; whitespace alone is not JSON (400 from the decoder)
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
