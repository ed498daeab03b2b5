"""The push routes the app mounts: one path for both transports, plus execution streams,
runs feed streams and AG-UI runs.

``/agents/push`` is served by WebSocket for an upgrade and by SSE for a plain GET; the
Starlette router picks by the scope type, and both go through the same admission.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route, WebSocketRoute

from app.http.params import EXECUTION_PATH, WORKFLOW_PATH
from transports import agui, sse, websocket


def push_routes() -> list[BaseRoute]:
    return [
        WebSocketRoute("/agents/push", websocket.PushEndpoint(), name="push_ws"),
        Route("/agents/push", sse.push_endpoint, methods=["GET"], name="push_sse"),
        Route(
            f"{EXECUTION_PATH}/stream",
            sse.stream_endpoint,
            methods=["GET"],
            name="execution_stream",
        ),
        Route(f"{WORKFLOW_PATH}/stream", sse.feed_endpoint, methods=["GET"], name="runs_feed"),
        Route(f"{WORKFLOW_PATH}/agui", agui.agui_endpoint, methods=["POST"], name="agui_run"),
    ]
