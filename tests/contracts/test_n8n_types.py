"""graphpush's push messages type-check against n8n's own published TypeScript types
(SPEC §4, §9).

Real workflows run through the real app; every message of their event logs becomes a
constant of a generated TypeScript module, typed as n8n's push message of its ``type``
(``PushMessage`` of ``@n8n/api-types`` in its JSON form, ``n8n-types/wire.ts``), and every
``flattedRunData``, parsed by the real ``flatted``, as n8n's ``IRunData``. One
``tsc --noEmit --strict`` run must accept it. The same module holds n8n's own captured
messages (the wire form must accept what n8n sends) and deliberately broken copies of ours
under ``@ts-expect-error`` (tsc must reject each, so the check can fail).

``executionRecovered`` is not logged; it is checked as the manager builds it. A run that
crashed with its process is not run here: it ends with the same ``executionFinished`` as
the canceled ones, with status ``crashed`` (``tests/e2e/test_restart.py``).

The npm project ``n8n-types/`` is installed by ``scripts/setup``; without node or that
install the test skips, except on CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from langgraph.graph import START, StateGraph

from app.executions.service import ExecutionService
from app.messages import ExecutionRecovered, ExecutionRecoveredData, encode
from app.settings import Settings
from support import counting, n8n_types
from support.app import create_workflow, logged_messages, run, running_app, wait_for_status
from support.engine import chain, node, reference, wait_for_log, workflow
from support.n8n_types import Module, broken_copy, parse_flatted

pytestmark = pytest.mark.timeout(180)

FINISHED = ("success", "error", "canceled", "crashed")
#: graphpush's own message types (SPEC §5, §8): n8n has no type for them.
EXTENSION_TYPES = frozenset(
    {"executionSnapshot", "resumeFailed", "nodeExecuteStream", "runsSnapshot"}
    | {"ack", "error", "pong"}
)
#: graphpush's extension fields on n8n's messages (SPEC §4); every other field is n8n's.
EXTENSION_FIELDS = ("graph_state",)
#: n8n's captured messages that must type-check; the Code-node capture does not (its
#: ``WrappedExecutionError`` is not one of n8n's published ``ExecutionError`` types).
CAPTURES = ("success-trigger-set-set.jsonl", "error-stop-and-error.jsonl")

SUCCESS = chain(
    node("Start"), node("B", "set", values={"b": "hello"}), node("C", "set", values={"c": 1})
)
FAILING = chain(
    node("Start"), node("B", "fail", message="boom", description="B fails"), node("C", "set")
)
RAISING = chain(
    node("Start"),
    node("Count", "python", function="support.counting:counted"),
    node("Flaky", "python", function="support.counting:flaky"),
    node("End", "set", values={"end": True}),
)
IF = workflow(
    [
        node("Start"),
        node("Check", "if", field="topic", value="billing"),
        node("Yes", "set", values={"yes": 1}),
        node("No", "set", values={"no": 1}),
    ],
    [("Start", 0, "Check"), ("Check", 0, "Yes"), ("Check", 1, "No")],
)
SWITCH = workflow(
    [
        node("Start"),
        node("Route", "switch", field="kind", cases=["a", "b"]),
        *(node(name, "set") for name in ("A", "B", "Other")),
    ],
    [("Start", 0, "Route"), ("Route", 0, "A"), ("Route", 1, "B"), ("Route", 2, "Other")],
)
MERGE = workflow(
    [
        node("Start"),
        node("Slow", "delay", ms=30),
        node("Fast", "set", values={"fast": 1}),
        node("Join", "merge"),
        node("End", "set"),
    ],
    [
        ("Start", 0, "Slow"),
        ("Start", 0, "Fast"),
        ("Slow", 0, "Join"),
        ("Fast", 0, "Join"),
        ("Join", 0, "End"),
    ],
)
STREAMING = chain(
    node("Start"), node("Work", "python", function="support.stream_functions:progress_in_a_thread")
)
WAIT = chain(node("Start"), node("Approve", "wait", message="ok?"), node("Done", "set"))
SLOW = chain(node("Start"), node("Sleep", "delay", ms=60_000), node("After", "set"))


def think(state: dict[str, Any]) -> dict[str, Any]:
    if state["question"] == "explode":
        raise ValueError("cannot think about that")
    return {"answer": ["thought", 1, None]}


def register(service: ExecutionService) -> None:
    builder = StateGraph(dict[str, Any])
    builder.add_node("think", think)
    builder.add_edge(START, "think")
    service.register_graph("thinker", builder.compile())


@pytest.fixture
def toolchain() -> tuple[str, Path]:
    """``node`` and ``tsc``; checked before the app starts."""
    return n8n_types.toolchain()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    modules = (*counting.MODULES, "support.stream_functions")
    allowed = msgspec.structs.replace(settings, python_modules=modules)
    async with running_app(allowed, register) as (_, client):
        yield client


@pytest.fixture(autouse=True)
def counted() -> Iterator[None]:
    counting.reset()
    yield
    counting.reset()


async def finished(client: httpx.AsyncClient, workflow_id: str, **body: Any) -> str:
    execution_id = await run(client, workflow_id, **body)
    await wait_for_status(client, execution_id, *FINISHED)
    return execution_id


async def retried(client: httpx.AsyncClient, execution_id: str, **body: Any) -> str:
    response = await client.post(f"/agents/executions/{execution_id}/retry", json=body)
    assert response.status_code == 202, response.text
    new_id = str(response.json()["execution_id"])
    await wait_for_status(client, new_id, *FINISHED)
    return new_id


async def canceled_at(client: httpx.AsyncClient, body: dict[str, Any], node_name: str) -> str:
    """A run of ``body`` canceled once ``node_name`` has started."""
    execution_id = await run(client, await create_workflow(client, body))
    await wait_for_log(client, execution_id, "nodeExecuteBefore", node_name)
    assert (await client.post(f"/agents/executions/{execution_id}/cancel")).status_code == 202
    await wait_for_status(client, execution_id, "canceled")
    return execution_id


async def resumed(client: httpx.AsyncClient, workflow_id: str) -> str:
    execution_id = await run(client, workflow_id)
    await wait_for_status(client, execution_id, "waiting")
    response = await client.post(f"/agents/executions/{execution_id}/resume", json={"value": 1})
    assert response.status_code == 202, response.text
    await wait_for_status(client, execution_id, "success")
    return execution_id


async def scenarios(client: httpx.AsyncClient) -> dict[str, str]:
    """Run every scenario to its end: the execution id of each, by name."""
    ids = {
        name: await finished(client, await create_workflow(client, body), **run_body)
        for name, body, run_body in (
            ("success", SUCCESS, {}),
            ("fail_node", FAILING, {}),
            ("if_branch", IF, {"input": {"topic": "sales"}}),
            ("switch_branch", SWITCH, {"input": {"kind": "b"}}),
            ("merge", MERGE, {}),
            ("stream", STREAMING, {}),
        )
    }
    counting.failing.add("flaky")
    ids["python_raises"] = await finished(client, await create_workflow(client, RAISING))
    counting.failing.clear()
    ids["retry_failed"] = await retried(client, ids["python_raises"])
    ids["retry_from_node"] = await retried(client, ids["if_branch"], from_node="No")
    ids["graph"] = await finished(client, "thinker", input={"question": "why"})
    ids["graph_raises"] = await finished(client, "thinker", input={"question": "explode"})
    ids["wait_resume"] = await resumed(client, await create_workflow(client, WAIT))
    ids["cancel_running"] = await canceled_at(client, SLOW, "Sleep")
    ids["cancel_waiting"] = await canceled_at(client, WAIT, "Approve")
    return ids


def n8n_message(message: dict[str, Any]) -> dict[str, Any]:
    """The message as n8n's type sees it: ``type`` and ``data`` without our extensions."""
    data = {k: v for k, v in message["data"].items() if k not in EXTENSION_FIELDS}
    return {"type": message["type"], "data": data}


#: Deliberate mismatches, each made in a copy of our first message of its type (or of the
#: first non-empty run data): tsc must reject every one.
BROKEN: tuple[tuple[str, str, Any], ...] = (
    ("nodeExecuteBefore", "data.sequenceNumber", "0"),
    ("nodeExecuteBefore", "data.data.source", [{"previousNode": "x", "previousNodeOuput": 0}]),
    ("executionStarted", "data.workflowName", None),
    ("executionStarted", "data.startedAt", 0),
    ("nodeExecuteAfter", "data.itemCountByConnectionType", ...),
    ("nodeExecuteAfter", "data.data.executionStatus", "done"),
    ("nodeExecuteAfterData", "data.data.data.main.0.0.json", ...),
    ("executionFinished", "data.status", "succeeded"),
    ("RunData", "Start.0.executionTime", "1"),
)


def add_broken(
    module: Module, messages: dict[str, dict[str, Any]], run_data: dict[str, Any]
) -> None:
    """Each of :data:`BROKEN`, under ``@ts-expect-error``."""
    for type_, path, value in BROKEN:
        change = f"{path} {'deleted' if value is ... else f'= {json.dumps(value)}'}"
        name = f"broken_{type_}_{path}"
        if type_ == "RunData":
            original = next(data for data in run_data.values() if data)
            module.add(name, "RunData", broken_copy(original, path, value), broken=change)
        else:
            original = next(m for m in messages.values() if m["type"] == type_)
            module.push(name, broken_copy(original, path, value), broken=change)


#: The n8n message types the scenarios must log, and the run statuses they must end with.
LOGGED = {"executionStarted", "executionWaiting", "executionFinished"} | {
    "nodeExecuteBefore",
    "nodeExecuteAfter",
    "nodeExecuteAfterData",
}
STATUSES = {"success", "error", "canceled"}


async def test_every_logged_message_type_checks_against_n8ns_published_types(
    toolchain: tuple[str, Path], client: httpx.AsyncClient, tmp_path: Path
) -> None:
    node_bin, tsc = toolchain
    logged = {
        f"{name}_{m['seq']}_{m['type']}": m
        for name, execution_id in (await scenarios(client)).items()
        for m in await logged_messages(client, execution_id)
    }
    ours = {k: n8n_message(m) for k, m in logged.items() if m["type"] not in EXTENSION_TYPES}
    assert "nodeExecuteStream" in {m["type"] for m in logged.values()}
    # Not logged: what the manager broadcasts for each run a restart found crashed.
    recovered = encode(ExecutionRecovered(ExecutionRecoveredData("crashed-run")))
    ours["recovered"] = msgspec.json.decode(recovered)
    started = {k: m["data"] for k, m in ours.items() if m["type"] == "executionStarted"}
    run_data = dict(
        zip(
            started,
            parse_flatted(node_bin, [d["flattedRunData"] for d in started.values()]),
            strict=True,
        )
    )
    assert {m["type"] for m in ours.values()} >= LOGGED
    assert {m["data"]["status"] for m in ours.values() if "status" in m["data"]} >= STATUSES
    assert any("retryOf" in d for d in started.values()) and any(run_data.values())

    module = Module()
    for name, message in ours.items():
        module.push(name, message)
    for name, data in run_data.items():
        module.add(f"{name}_runData", "RunData", data)
    for capture in CAPTURES:
        for index, message in enumerate(reference(capture)):
            module.push(f"n8n_{capture}_{index}", message)
    add_broken(module, ours, run_data)
    report = module.typecheck(node_bin, tsc, tmp_path)
    if report:
        pytest.fail(f"tsc rejects {tmp_path / 'messages.ts'}:\n{report}", pytrace=False)
