"""``/docs`` in real headless Chromium: the interactive API reference renders every operation
of ``/openapi.json`` from files this server serves, with no request to any other host."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from playwright.sync_api import Page, expect

from app.settings import Settings
from support.app import Server
from support.npm import installed


def test_docs_renders_every_operation_offline(
    serve: Callable[..., Server], settings: Settings, open_page: Callable[..., Page]
) -> None:
    installed("swagger-ui-dist/swagger-ui-bundle.js")
    server = serve(settings)
    document = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    operations = [(m.upper(), p) for p, ms in document["paths"].items() for m in ms]
    page = open_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{server.url}/docs")
    expect(page.locator(".opblock")).to_have_count(len(operations))
    for method, path in operations:
        block = page.locator(f".opblock-{method.lower()}", has_text=path).first
        expect(block).to_be_visible()
    assert requested and all(url.startswith(server.url) for url in requested), requested
