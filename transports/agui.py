"""AG-UI over SSE (SPEC §11): ``POST /agents/workflows/{workflow_id}/agui``.

The body is AG-UI's ``RunAgentInput``; its ``state`` (and ``messages``) become a run of the
workflow, and the answer is that run's execution stream (§5.4) re-encoded as AG-UI events
(:mod:`app.push.agui`) on the same lean SSE response as the other streams. The stream
ends after RUN_FINISHED or RUN_ERROR; a client that leaves early does not stop the run.
Refusals answer with the JSON error body: 401, 400 (not JSON), 413, 415, 422 (not a
``RunAgentInput``, or a ``state`` that is not an object), 404 (unknown workflow), 503.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from app.errors import GraphpushError
from app.http.api import read_body
from app.http.auth import authenticate
from app.push import agui
from app.push.connection import CloseCode
from app.push.wire import Outgoing
from app.runtime import runtime
from transports.handshake import error_response
from transports.pump import Pump, write_timeout_s
from transports.sse import EventStream


async def agui_endpoint(request: Request) -> Response:
    rt = runtime(request)
    pump = Pump(write_timeout_s(rt.settings))
    try:
        owner = authenticate(request, rt.settings)
        agent_input = agui.parse_input(await read_body(request))
        record = await rt.service.queue_manual_execution(
            request.path_params["workflow_id"], input=agui.run_input(agent_input), owner=owner
        )
        conn = pump.attach(await rt.hub.open_stream(record.id, 0, owner, pump.wake))
    except GraphpushError as exc:
        return error_response(exc)
    run = agui.AguiRun(agent_input.thread_id, agent_input.run_id)

    def encode(batch: list[Outgoing]) -> bytes:
        chunk = run.encode(batch)
        if run.done:  # a waiting run's stream would stay open: AG-UI's run is over
            conn.close(CloseCode.NORMAL, "run ended")
        return chunk

    return EventStream(pump, rt.settings, on_close=lambda: rt.hub.disconnect(conn), encode=encode)
