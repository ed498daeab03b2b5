"""Reading a REST request: its JSON body (size, media type and nesting limits, decoded to
a schema with every problem named) and its caller (SPEC §3, §11)."""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec
from starlette.requests import Request

from app.errors import BadRequest, ValidationFailed
from app.http.auth import authenticate
from app.http.body import read_json_body
from app.model.access import Caller
from app.runtime import runtime
from app.workflows.checks import check_value


async def read_body(request: Request) -> bytes:
    """The request body, refusing what is over ``max_body_bytes`` (413) or not JSON (415)."""
    return await read_json_body(request, runtime(request).settings.max_body_bytes)


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
        pass
    with contextlib.suppress(msgspec.ValidationError):
        # JSON Schema's integer includes 60.0 (and JSON does not tell them apart); msgspec's
        # int does not. Tried only once the body as sent failed.
        return msgspec.convert(_whole_numbers(raw), type_)
    # Walked only on failure: listing every problem costs ~100x a convert (it reads the
    # Structs' fields each time), which was a tenth of POST /run's CPU.
    problems = check_value(raw, type_, "")
    if problems:
        raise ValidationFailed("the body does not match its schema", problems)
    return msgspec.convert(raw, type_)  # raises: a mismatch check_value did not name


def _whole_numbers(value: Any) -> Any:
    """``value`` with every float that has no fraction as an int (the body is at most
    :data:`MAX_JSON_DEPTH` deep, so recursion is bounded)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


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


def caller_of(request: Request) -> Caller:
    """Who makes the request: an API key's owner or a scoped token (401 for neither)."""
    return authenticate(request, runtime(request).settings)


def key_owner(request: Request) -> str | None:
    """The caller's owner, for a call that needs an API key (a token is 403)."""
    caller = caller_of(request)
    caller.require_key()
    return caller.owner
