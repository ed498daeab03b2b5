"""Request bodies (SPEC §3): read once, bounded, and only when they are JSON."""

from __future__ import annotations

from starlette.requests import Request

from app.errors import PayloadTooLarge, UnsupportedMediaType
from app.model.cursor import parse_integer


async def read_json_body(request: Request, limit: int) -> bytes:
    """The request body, refusing what is over ``limit`` bytes (413) or not JSON (415)."""
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
