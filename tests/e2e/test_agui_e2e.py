"""AG-UI end to end (SPEC §11): the real ``@ag-ui/client`` (npm, pinned by the lockfile in
tests/e2e/agui_client, installed by scripts/setup) runs graphpush workflows under Node."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ag_ui.core import Event
from pydantic import TypeAdapter

from app.main import create_app
from app.settings import load_settings
from support.push import serving

pytestmark = pytest.mark.timeout(60)

CLIENT = Path(__file__).parent / "agui_client"
EVENTS: TypeAdapter[Any] = TypeAdapter(Event)
HISTORY = [{"id": "u1", "role": "user", "content": "Say hello"}]


@pytest.fixture
def node() -> str:
    found = shutil.which("node")
    installed = (CLIENT / "node_modules" / "@ag-ui" / "client").is_dir()
    if found is None or not installed:
        message = "node or tests/e2e/agui_client/node_modules missing: run scripts/setup"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[str]:
    settings = load_settings({"data_dir": tmp_path, "load_examples": True}, environ={})
    async with serving(create_app(settings), settings) as host:
        yield f"http://{host}"


async def consume(
    node: str, url: str, state: dict[str, Any], history: list[dict[str, Any]] = HISTORY
) -> dict[str, Any]:
    """What ``@ag-ui/client``'s HttpAgent saw of one run of ``url``."""
    process = await asyncio.create_subprocess_exec(
        node,
        "consume.mjs",
        url,
        json.dumps(state),
        json.dumps(history),
        cwd=CLIENT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    seen: dict[str, Any] = json.loads(out)
    for event in seen["events"]:
        EVENTS.validate_python(event)  # every event is valid by the Python models too
    return seen


def steps(events: list[dict[str, Any]]) -> list[str]:
    return [f"{e['type']} {e['stepName']}" for e in events if "stepName" in e]


async def test_an_agui_client_runs_a_workflow_end_to_end(node: str, server: str) -> None:
    seen = await consume(node, f"{server}/agents/workflows/linear/agui", {"topic": "x"})
    assert seen["failure"] is None
    events = seen["events"]
    assert events[0]["type"] == "RUN_STARTED"
    assert (events[0]["threadId"], events[0]["runId"]) == ("thread-1", "run-1")
    assert events[-1] == {"type": "RUN_FINISHED", "threadId": "thread-1", "runId": "run-1"}
    assert steps(events) == [
        f"{kind} {name}"
        for name in ("Start", "Greet", "Sign")
        for kind in ("STEP_STARTED", "STEP_FINISHED")
    ]
    # The client's state is the last STATE_SNAPSHOT: the finished run's graph_state.
    assert seen["state"]["completed_nodes"] == ["Start", "Greet", "Sign"]
    execution_id = events[0]["metadata"]["executionId"]
    async with httpx.AsyncClient(base_url=server, timeout=10) as client:
        run = (await client.get(f"/agents/executions/{execution_id}")).json()
    assert run["status"] == "success"
    assert run["input"] == {"topic": "x", "messages": HISTORY}  # state + chat history


CHAT = {
    "name": "chat",
    "nodes": [
        {"name": "Start", "type": "trigger"},
        # fake, no response: it answers the last user message of the chat history
        {
            "name": "Reply",
            "type": "llm",
            "parameters": {"model": "fake", "prompt": "", "delay_ms": 20},
        },
    ],
    "connections": {"Start": {"main": [[{"node": "Reply", "type": "main", "index": 0}]]}},
}


def text_of(events: list[dict[str, Any]], message_id: str) -> str:
    return "".join(
        e["delta"]
        for e in events
        if e["type"] == "TEXT_MESSAGE_CONTENT" and e["messageId"] == message_id
    )


async def test_an_agui_client_gets_the_llm_node_s_text_and_the_node_sees_the_history(
    node: str, server: str
) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=10) as client:
        workflow_id = (await client.post("/agents/workflows", json=CHAT)).json()["id"]
    asked = "Please say hello to everyone in the room from all of us"
    history = [{"id": "u1", "role": "user", "content": asked}]
    seen = await consume(node, f"{server}/agents/workflows/{workflow_id}/agui", {}, history)
    assert seen["failure"] is None
    events = seen["events"]
    starts = [e for e in events if e["type"] == "TEXT_MESSAGE_START"]
    assert len(starts) == 1 and starts[0]["role"] == "assistant"
    message_id = starts[0]["messageId"]
    assert sum(e["type"] == "TEXT_MESSAGE_CONTENT" for e in events) > 1  # streamed, not at once
    assert text_of(events, message_id) == asked
    kinds = [e["type"] for e in events]
    assert kinds.index("STEP_STARTED") < kinds.index("TEXT_MESSAGE_START")
    assert kinds.index("TEXT_MESSAGE_END") < kinds.index("RUN_FINISHED")
    # The client assembled the assistant's message from the events.
    assert seen["messages"] == [
        history[0],
        {"id": message_id, "role": "assistant", "content": asked},
    ]
    execution_id = events[0]["metadata"]["executionId"]
    async with httpx.AsyncClient(base_url=server, timeout=10) as client:
        run = await client.get(f"/agents/executions/{execution_id}?include_data=true")
    output = run.json()["data"]["Reply"][0]["main"][0][0]["json"]
    assert (output["text"], output["messageId"]) == (asked, message_id)


async def test_custom_chunks_reach_the_agui_client(node: str, server: str) -> None:
    seen = await consume(node, f"{server}/agents/workflows/agent/agui", {"topic": "refunds"})
    assert seen["failure"] is None
    custom = [e for e in seen["events"] if e["type"] == "CUSTOM"]
    assert custom and all(e["name"] == "Research" for e in custom)
    assert custom[0]["value"]["step"] == 1
    assert [m["role"] for m in seen["messages"]] == ["user", "assistant"]


async def test_a_failing_workflow_ends_the_agui_run_with_run_error(node: str, server: str) -> None:
    seen = await consume(node, f"{server}/agents/workflows/failing/agui", {})
    assert seen["events"][-1] == {
        "type": "RUN_ERROR",
        "message": "the check failed",
        "code": "error",
    }
    assert steps(seen["events"])[-2:] == ["STEP_STARTED Check", "STEP_FINISHED Check"]


async def test_a_waiting_workflow_ends_the_agui_run_with_an_interrupt(
    node: str, server: str
) -> None:
    seen = await consume(node, f"{server}/agents/workflows/approval/agui", {})
    assert seen["failure"] is None
    outcome = seen["events"][-1]["outcome"]
    assert outcome["type"] == "interrupt"
    assert outcome["interrupts"][0]["reason"] == "waiting"


async def test_agui_refusals_use_the_error_body(server: str) -> None:
    body = {"threadId": "t", "runId": "r", "messages": []}
    async with httpx.AsyncClient(base_url=server, timeout=10) as client:
        unknown = await client.post("/agents/workflows/nope/agui", json=body)
        not_input = await client.post("/agents/workflows/linear/agui", json={"threadId": "t"})
        not_json = await client.post(
            "/agents/workflows/linear/agui",
            content=b"{",
            headers={"content-type": "application/json"},
        )
        bad_state = await client.post("/agents/workflows/linear/agui", json={**body, "state": 1})
    assert unknown.status_code == 404
    assert not_input.status_code == 422
    assert {p["path"] for p in not_input.json()["error"]["details"]} == {"runId", "messages"}
    assert not_json.status_code == 400
    assert bad_state.status_code == 422
    assert bad_state.json()["error"]["details"] == [
        {"path": "state", "message": "expected an object"}
    ]
