"""The web canvas: ``/`` serves the page, ``/static/...`` its ES modules and styles.

The page is plain files under ``app/http/static`` (no build step, nothing from the network); it
talks to the REST API (SPEC §3) and to ``/agents/push`` (SPEC §5) like any other client. Its
push connection and the JavaScript client are the files of ``clients/js`` (the npm package),
linked into ``static`` so that there is one copy of each.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR: Final = Path(__file__).with_name("static")

#: Everything the page loads is same-origin; push connections are too (``connect-src``).
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate every time (ETag), so a new version of the page never runs stale modules.
    "Cache-Control": "no-cache",
}


class _StaticFiles(StaticFiles):
    """StaticFiles whose responses are revalidated on every load and never sniffed."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


async def index(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)


def web_routes() -> list[BaseRoute]:
    return [
        Route("/", index, methods=["GET"], name="canvas"),
        # follow_symlink: static/push.js and static/graphpush.js are links into clients/js.
        Mount(
            "/static", app=_StaticFiles(directory=STATIC_DIR, follow_symlink=True), name="static"
        ),
    ]
