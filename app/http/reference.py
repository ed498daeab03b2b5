"""The API described for people and tools (SPEC §12): ``/openapi.json`` for REST, built
from the route declarations once, when the app is made."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from app.http.openapi import openapi_document
from app.http.operation import Operation
from app.messages import encoder


def reference_routes(operations: Sequence[Operation]) -> list[BaseRoute]:
    openapi = encoder.encode(openapi_document(operations))

    async def openapi_json(request: Request) -> Response:
        return Response(openapi, media_type="application/json")

    return [Route("/openapi.json", openapi_json, methods=["GET"], name="openapi")]
