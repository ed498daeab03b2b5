"""AG-UI over SSE (SPEC §11): ``POST /agents/workflows/{workflow_id}/agui``.

The body is AG-UI's ``RunAgentInput``; its ``state`` (and ``messages``) become a run of the
workflow, and the answer is that run's execution stream (§5.4) re-encoded as AG-UI events
(:mod:`app.push.agui`) on the same SSE response as the other streams. The stream ends
after RUN_FINISHED or RUN_ERROR; a client that leaves early does not stop the run.
Refusals answer with the JSON error body: 401, 400 (not JSON), 413, 415, 422 (not a
``RunAgentInput``, or a ``state`` that is not an object), 404 (unknown workflow), 503.
"""

from __future__ import annotations

from collections.abc import Iterator

from starlette.requests import Request
from starlette.responses import Response

from app.errors import GraphpushError
from app.http.auth import authenticate
from app.http.body import read_json_body
from app.http.errors import error_response
from app.push import agui
from app.push.connection import CloseCode, Connection
from app.push.wire import Outgoing
from transports.sse import EventStream
from transports.state import push_state


async def agui_endpoint(request: Request) -> Response:
    rt = push_state(request)
    pump = rt.pumps.pump()
    try:
        caller = authenticate(request, rt.settings)
        caller.require_key()  # it starts a run: a scoped token cannot
        agent_input = agui.parse_input(await read_json_body(request, rt.settings.max_body_bytes))
        workflow_id, run_input = request.path_params["workflow_id"], agui.run_input(agent_input)
        conn = pump.attach(await rt.hub.open_run(workflow_id, run_input, caller.owner, pump.wake))
    except GraphpushError as exc:
        return error_response(exc)
    run = _AguiEncoder(agui.AguiRun(agent_input.thread_id, agent_input.run_id), conn)
    return EventStream(pump, rt.settings, on_close=lambda: rt.hub.disconnect(conn), encode=run)


class _AguiEncoder:
    """Lays out batches as AG-UI events; closes the stream once the AG-UI run is over (a
    waiting run's execution stream would stay open)."""

    __slots__ = ("conn", "run")

    def __init__(self, run: agui.AguiRun, conn: Connection) -> None:
        self.run = run
        self.conn = conn

    def __call__(self, batch: list[Outgoing], max_bytes: int, head: bytes) -> Iterator[list[bytes]]:
        yield [head, self.run.encode(batch)]
        if self.run.done:
            self.conn.close(CloseCode.NORMAL, "run ended")
