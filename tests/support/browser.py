"""What the browser tests (tests/browser) share besides their fixtures: the bound of every
wait, a gated WebSocket, a proxy that drops a push connection, a blank same-origin page and
a workflow whose messages keep coming for a while."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from support.app import Server
from support.engine import chain, node

if TYPE_CHECKING:
    from playwright.sync_api import Page, WebSocketRoute

#: Every wait in the browser is bounded by this (milliseconds).
WAIT_MS = 10_000

#: A blank page's WebSocket that fails (connection refused) until ``__allowWebSocket`` is set.
GATED_WEBSOCKET = """
window.__allowWebSocket = false;
window.WebSocket = class GatedWebSocket extends WebSocket {
  constructor(url) { super(window.__allowWebSocket ? url : "ws://127.0.0.1:9/"); }
};
"""


class DroppingProxy:
    """Stands between the page and ``/agents/push``: on the first connection it forwards
    ``forward`` messages, swallows the next ``swallow`` (the server counts them as sent),
    then closes the page side with 4008 as a slow consumer would be. Later connections
    pass through."""

    def __init__(self, *, forward: int, swallow: int) -> None:
        self.forward = forward
        self.swallow = swallow
        self.urls: list[str] = []

    def __call__(self, ws: WebSocketRoute) -> None:
        self.urls.append(ws.url)
        server = ws.connect_to_server()
        if len(self.urls) > 1:
            return  # connected without handlers: frames pass through both ways
        seen = 0

        def from_server(message: str | bytes) -> None:
            nonlocal seen
            seen += 1
            if seen <= self.forward:
                ws.send(message)
            elif seen == self.forward + self.swallow:
                ws.close(code=4008, reason="slow consumer: outbound buffer full")
                server.close()

        server.on_message(from_server)
        ws.on_message(server.send)


def stepwise(workflow_id: str) -> dict[str, Any]:
    """Messages keep coming for a while: 4 nodes, two of them 300 ms delays (14 messages)."""
    return chain(
        node("Start"),
        node("Fetch", "delay", ms=300),
        node("Think", "delay", ms=300),
        node("Reply", "set", values={"done": True}),
        name=workflow_id,
        id=workflow_id,
    )


def blank_page(page: Page, server: Server) -> None:
    """Open a same-origin page with nothing of the canvas in it: the health check's JSON.
    (A page Playwright fulfils itself counts as public to Chromium, which then blocks its
    connections to the loopback server.)"""
    page.goto(server.url + "/healthz")
    assert page.evaluate("document.scripts.length") == 0
