"""The API described for people and tools (SPEC §12).

- ``/openapi.json``: the REST API, generated from the route declarations when the app is made.
- ``/asyncapi.yaml``: the push channels and their messages (the text of ``docs/asyncapi.yaml``).
- ``/docs``: Swagger UI on that document, from the pinned ``swagger-ui-dist`` that
  ``scripts/setup`` installs under ``node_modules/`` (nothing is loaded from the network).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from app.http.asyncapi import asyncapi_yaml
from app.http.openapi import openapi_document
from app.http.operation import Operation
from app.http.web import STATIC_DIR
from app.messages import encoder

#: Installed by ``scripts/setup`` (``npm ci``) from the pinned ``package-lock.json``.
SWAGGER_UI: Final = Path(__file__).resolve().parents[2] / "node_modules" / "swagger-ui-dist"

#: Swagger UI sets inline styles; scripts and everything else stay same-origin.
DOCS_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


async def docs_page(request: Request) -> Response:
    if not (SWAGGER_UI / "swagger-ui-bundle.js").is_file():
        return PlainTextResponse(
            "The API reference needs swagger-ui-dist: run scripts/setup. "
            "The document itself is at /openapi.json.",
            status_code=503,
        )
    return FileResponse(STATIC_DIR / "docs.html", headers=DOCS_HEADERS)


def reference_routes(operations: Sequence[Operation]) -> list[BaseRoute]:
    openapi = encoder.encode(openapi_document(operations))
    asyncapi = asyncapi_yaml()

    async def openapi_json(request: Request) -> Response:
        return Response(openapi, media_type="application/json")

    async def asyncapi_document(request: Request) -> Response:
        return Response(asyncapi, media_type="application/yaml")

    return [
        Route("/openapi.json", openapi_json, methods=["GET"], name="openapi"),
        Route("/asyncapi.yaml", asyncapi_document, methods=["GET"], name="asyncapi"),
        Route("/docs", docs_page, methods=["GET"], name="api_docs"),
        Mount(
            "/docs/assets",
            app=StaticFiles(directory=SWAGGER_UI, check_dir=False),
            name="api_docs_assets",
        ),
    ]
