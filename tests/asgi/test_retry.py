"""Retry and fork (SPEC §9) through the real app: a retry reuses the recorded results of the
nodes before the node it starts from (they do not run again: ``python`` nodes count their
calls), its messages say so in n8n's shapes, and what it cannot do is refused."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import msgspec
import pytest
from langgraph.graph import START, StateGraph

from app.executions.service import ExecutionService
from app.settings import Settings
from support import counting
from support.app import create_workflow, logged_messages, run, running_app, wait_for_status
from support.engine import NODE_EVENTS, chain, error_body, kinds, node, node_triples, workflow

pytestmark = pytest.mark.timeout(30)
FINISHED = ("success", "error", "canceled", "crashed")

FLAKY_CHAIN = chain(
    node("Start"),
    node("Count", "python", function="support.counting:counted"),
    node("Flaky", "python", function="support.counting:flaky"),
    node("End", "set", values={"end": True}),
    name="flaky chain",
)


class Graph(dict[str, Any]):
    pass


def register(service: ExecutionService) -> None:
    builder: StateGraph[Graph, Any, Graph, Graph] = StateGraph(Graph)
    builder.add_node("only", lambda state: {"seen": True})
    builder.add_edge(START, "only")
    service.register_graph("plain-graph", builder.compile())


@pytest.fixture(autouse=True)
def calls() -> Iterator[Any]:
    counting.reset()
    yield counting.calls
    counting.reset()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    allowed = msgspec.structs.replace(settings, python_modules=counting.MODULES)
    async with running_app(allowed, register) as (_, client):
        yield client


async def finish(client: httpx.AsyncClient, workflow_id: str, **body: Any) -> str:
    execution_id = await run(client, workflow_id, **body)
    await wait_for_status(client, execution_id, *FINISHED)
    return execution_id


async def retry(client: httpx.AsyncClient, execution_id: str, **body: Any) -> str:
    response = await client.post(f"/agents/executions/{execution_id}/retry", json=body)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["status"] == "new" and answer["status_url"].endswith(answer["execution_id"])
    return str(answer["execution_id"])


async def retried(
    client: httpx.AsyncClient, execution_id: str, **body: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Retry ``execution_id`` to its end: the new run's DTO and its log."""
    new_id = await retry(client, execution_id, **body)
    dto = await wait_for_status(client, new_id, *FINISHED)
    return dto, await logged_messages(client, new_id)


def unflatten(text: str) -> Any:
    """Parse ``flatted`` text (written here from the format, not from our encoder)."""
    table = json.loads(text)

    def resolve(entry: Any) -> Any:
        if isinstance(entry, dict):
            return {key: revive(value) for key, value in entry.items()}
        if isinstance(entry, list):
            return [revive(value) for value in entry]
        return entry

    def revive(value: Any) -> Any:
        return resolve(table[int(value)]) if isinstance(value, str) else value

    return resolve(table[0])


def check_task_data(task: dict[str, Any]) -> None:
    """One of n8n's ``ITaskData`` of a successful node run, with its output items."""
    assert set(task) <= {"startTime", "executionIndex", "executionTime", "executionStatus"} | {
        "source",
        "hints",
        "data",
    }, task
    assert isinstance(task["startTime"], int) and isinstance(task["executionIndex"], int)
    assert isinstance(task["executionTime"], int) and task["executionStatus"] == "success"
    for source in task["source"]:
        assert isinstance(source["previousNode"], str), source
    for items in task["data"]["main"]:
        for item in items:
            assert isinstance(item["json"], dict) and item["pairedItem"] == {"item": 0}


def node_statuses(message: dict[str, Any]) -> dict[str, str]:
    return {name: n["status"] for name, n in message["data"]["graph_state"]["nodes"].items()}


def outputs(messages: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The first output item of ``name``'s ``nodeExecuteAfterData`` in ``messages``."""
    for m in messages:
        if m["type"] == "nodeExecuteAfterData" and m["data"]["nodeName"] == name:
            return dict(m["data"]["data"]["data"]["main"][0][0]["json"])
    raise AssertionError(f"{name} did not run")


# ---- retry from the failed node ------------------------------------------------------------


async def test_a_retry_starts_at_the_failed_node_and_reuses_the_nodes_before_it(
    client: httpx.AsyncClient, calls: Any
) -> None:
    counting.failing.add("flaky")
    original = await finish(client, await create_workflow(client, FLAKY_CHAIN), input={"q": 1})
    counting.failing.clear()

    dto, messages = await retried(client, original)

    assert dto["status"] == "success" and dto["retry_of"] == original
    assert dto["links"]["retry_of"] == f"/agents/executions/{original}"
    assert dto["input"] == {"q": 1}
    assert calls == {"counted": 1, "flaky": 2}
    assert kinds(messages) == [
        ("executionStarted", None),
        *node_triples("Flaky", "End"),
        ("executionFinished", None),
    ]
    assert [m["data"]["sequenceNumber"] for m in messages if "sequenceNumber" in m["data"]] == [
        0,
        1,
        2,
        3,
    ]
    assert [m["data"]["data"]["executionIndex"] for m in messages[1:-1]] == [2] * 3 + [3] * 3
    assert outputs(messages, "Flaky") == {"q": 1, "counted": 1, "flaky": 2}
    before = messages[1]["data"]["data"]
    assert before["source"] == [
        {"previousNode": "Count", "previousNodeOutput": 0, "previousNodeRun": 0}
    ]


async def test_a_retrys_execution_started_carries_retry_of_and_the_reused_run_data(
    client: httpx.AsyncClient,
) -> None:
    counting.failing.add("flaky")
    original = await finish(client, await create_workflow(client, FLAKY_CHAIN), input={"q": 1})
    first = (await client.get(f"/agents/executions/{original}?include_data=1")).json()

    _, messages = await retried(client, original)

    started = messages[0]["data"]
    assert messages[0]["type"] == "executionStarted" and started["retryOf"] == original
    run_data = unflatten(started["flattedRunData"])
    assert set(run_data) == {"Start", "Count"}
    for name, tasks in run_data.items():
        assert len(tasks) == 1
        check_task_data(tasks[0])
        assert tasks[0]["data"] == first["data"][name][0]
        meta = first["run_data_meta"][name][0]
        assert tasks[0]["executionIndex"] == meta["execution_index"]
    assert run_data["Count"][0]["source"] == [
        {"previousNode": "Start", "previousNodeOutput": 0, "previousNodeRun": 0}
    ]
    assert node_statuses(messages[0]) == {
        "Start": "success",
        "Count": "success",
        "Flaky": "pending",
        "End": "pending",
    }
    assert messages[0]["data"]["graph_state"]["completed_nodes"] == ["Start", "Count"]
    assert all(node_statuses(m)["Count"] == "success" for m in messages)


async def test_a_run_that_is_not_a_retry_starts_with_empty_run_data(
    client: httpx.AsyncClient,
) -> None:
    messages = await logged_messages(
        client, await finish(client, await create_workflow(client, FLAKY_CHAIN))
    )

    assert messages[0]["data"]["flattedRunData"] == "[{}]"
    assert "retryOf" not in messages[0]["data"]


async def test_a_retry_with_the_saved_workflow_runs_the_fixed_node(
    client: httpx.AsyncClient, calls: Any
) -> None:
    broken = chain(
        node("Start"),
        node("Count", "python", function="support.counting:counted"),
        node("Check", "fail", message="not yet"),
        node("End", "set", values={"end": True}),
    )
    workflow_id = await create_workflow(client, broken)
    original = await finish(client, workflow_id)
    fixed = {**broken, "nodes": [*broken["nodes"][:2], node("Check", "set", values={"ok": 1})]}
    fixed["nodes"].append(broken["nodes"][3])
    assert (await client.put(f"/agents/workflows/{workflow_id}", json=fixed)).status_code == 200

    again, _ = await retried(client, original)
    dto, messages = await retried(client, original, workflow="saved")

    assert again["status"] == "error"  # the original snapshot still fails
    assert dto["status"] == "success" and calls["counted"] == 1
    assert kinds(messages)[1:-1] == node_triples("Check", "End")
    assert outputs(messages, "End") == {"counted": 1, "ok": 1, "end": True}


async def test_a_fork_replaces_reused_results_with_the_given_state_and_input(
    client: httpx.AsyncClient, calls: Any
) -> None:
    workflow_id = await create_workflow(client, FLAKY_CHAIN)
    original = await finish(client, workflow_id, input={"q": 1})

    edited = {"Count": {"q": 2, "counted": 40, "note": "edited"}}
    dto, messages = await retried(client, original, from_node="Flaky", state=edited, input={"q": 3})

    assert dto["status"] == "success" and dto["input"] == {"q": 3}
    assert calls == {"counted": 1, "flaky": 2}
    assert outputs(messages, "Flaky") == {**edited["Count"], "flaky": 2}
    run_data = unflatten(messages[0]["data"]["flattedRunData"])
    assert run_data["Count"][0]["data"]["main"][0][0]["json"] == edited["Count"]
    assert kinds(messages)[1:-1] == node_triples("Flaky", "End")


async def test_a_successful_run_is_retried_whole_unless_a_node_is_named(
    client: httpx.AsyncClient, calls: Any
) -> None:
    original = await finish(client, await create_workflow(client, FLAKY_CHAIN))

    dto, messages = await retried(client, original)

    assert dto["status"] == "success" and dto["retry_of"] == original
    assert kinds(messages)[1:-1] == node_triples("Start", "Count", "Flaky", "End")
    assert messages[0]["data"]["flattedRunData"] == "[{}]"
    assert messages[0]["data"]["retryOf"] == original
    assert calls == {"counted": 2, "flaky": 2}


# ---- branches and joins -------------------------------------------------------------------

BRANCHING = workflow(
    [
        node("Start"),
        node("Is billing?", "if", field="topic", op="eq", value="billing"),
        node("Billing", "python", function="support.counting:flaky"),
        node("Other", "set", values={"routed": "general"}),
        node("Done", "set", values={"done": True}),
    ],
    [
        ("Start", 0, "Is billing?"),
        ("Is billing?", 0, "Billing"),
        ("Is billing?", 1, "Other"),
        ("Billing", 0, "Done"),
        ("Other", 0, "Done"),
    ],
)


async def test_a_retry_inside_a_branch_follows_the_output_the_original_took(
    client: httpx.AsyncClient,
) -> None:
    counting.failing.add("flaky")
    workflow_id = await create_workflow(client, BRANCHING)
    original = await finish(client, workflow_id, input={"topic": "billing"})
    counting.failing.clear()

    dto, messages = await retried(client, original)

    assert dto["status"] == "success"
    assert kinds(messages)[1:-1] == node_triples("Billing", "Done")
    assert messages[1]["data"]["data"]["source"] == [
        {"previousNode": "Is billing?", "previousNodeOutput": 0, "previousNodeRun": 0}
    ]
    assert set(unflatten(messages[0]["data"]["flattedRunData"])) == {"Start", "Is billing?"}
    assert node_statuses(messages[-1])["Other"] == "pending"
    response = await client.post(
        f"/agents/executions/{original}/retry", json={"from_node": "Other"}
    )
    assert response.status_code == 422
    assert error_body(response)["details"][0]["path"] == "from_node"


MERGING = workflow(
    [
        node("Start"),
        node("A", "set", values={"a": 1}),
        node("B", "python", function="support.counting:counted"),
        node("Join", "merge"),
        node("After", "python", function="support.counting:flaky"),
    ],
    [
        ("Start", 0, "A"),
        ("Start", 0, "B"),
        ("A", 0, "Join"),
        ("B", 0, "Join"),
        ("Join", 0, "After"),
    ],
)


async def test_a_retry_after_a_merge_reuses_both_of_its_inputs(
    client: httpx.AsyncClient, calls: Any
) -> None:
    counting.failing.add("flaky")
    original = await finish(client, await create_workflow(client, MERGING))
    counting.failing.clear()

    dto, messages = await retried(client, original)

    assert dto["status"] == "success" and calls == {"counted": 1, "flaky": 2}
    assert kinds(messages)[1:-1] == node_triples("After")
    assert outputs(messages, "After") == {"a": 1, "counted": 1, "flaky": 2}
    assert set(unflatten(messages[0]["data"]["flattedRunData"])) == {"Start", "A", "B", "Join"}


async def test_a_retry_of_one_input_of_a_merge_waits_only_for_that_input(
    client: httpx.AsyncClient, calls: Any
) -> None:
    counting.failing.add("flaky")
    original = await finish(client, await create_workflow(client, MERGING))
    counting.failing.clear()

    dto, messages = await retried(client, original, from_node="B")

    assert dto["status"] == "success" and calls == {"counted": 2, "flaky": 2}
    assert kinds(messages)[1:-1] == node_triples("B", "Join", "After")
    assert outputs(messages, "Join") == {"a": 1, "counted": 2}


# ---- what a retry refuses -----------------------------------------------------------------


async def test_only_a_finished_run_can_be_retried(client: httpx.AsyncClient) -> None:
    waiting = chain(node("Start"), node("Hold", "wait"))
    execution_id = await run(client, await create_workflow(client, waiting))
    await wait_for_status(client, execution_id, "waiting")

    response = await client.post(f"/agents/executions/{execution_id}/retry")
    unknown = await client.post("/agents/executions/nope/retry", json={})

    assert response.status_code == 409 and error_body(response)["code"] == "illegal_transition"
    assert unknown.status_code == 404 and error_body(unknown)["code"] == "not_found"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"from_node": "Nowhere"}, "from_node"),
        ({"from_node": "End"}, "from_node"),
        ({"state": {"End": {"x": 1}}}, "state.End"),
        ({"state": {"Count": 5}}, "state[...]"),
        ({"workflow": "latest"}, "workflow"),
        ({"input": [1]}, "input"),
        ({"push_ref": "bad ref"}, "push_ref"),
        ({"from": "Flaky"}, "from"),
    ],
)
async def test_a_retry_it_cannot_do_is_refused_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], path: str
) -> None:
    counting.failing.add("flaky")
    original = await finish(client, await create_workflow(client, FLAKY_CHAIN))

    response = await client.post(f"/agents/executions/{original}/retry", json=body)

    assert response.status_code == 422, response.text
    assert [p["path"] for p in error_body(response)["details"]] == [path]


async def test_a_saved_workflow_without_a_reused_node_is_refused(
    client: httpx.AsyncClient,
) -> None:
    counting.failing.add("flaky")
    workflow_id = await create_workflow(client, FLAKY_CHAIN)
    original = await finish(client, workflow_id)
    renamed = chain(
        node("Start"),
        node("Counter", "python", function="support.counting:counted"),
        node("Flaky", "python", function="support.counting:flaky"),
    )
    assert (await client.put(f"/agents/workflows/{workflow_id}", json=renamed)).status_code == 200

    response = await client.post(f"/agents/executions/{original}/retry", json={"workflow": "saved"})

    assert response.status_code == 422
    error = error_body(response)
    assert error["details"] == [
        {"path": "workflow", "message": "node 'Count' is no longer in the workflow"}
    ]


async def test_a_registered_graph_is_retried_from_its_start_only(
    client: httpx.AsyncClient,
) -> None:
    original = await finish(client, "plain-graph")

    refused = await client.post(f"/agents/executions/{original}/retry", json={"from_node": "only"})
    dto, messages = await retried(client, original)

    assert refused.status_code == 422
    assert error_body(refused)["code"] == "retry_from_node_unsupported"
    assert dto["status"] == "success" and dto["retry_of"] == original
    assert kinds(messages)[1:-1] == node_triples("only")


# ---- the retries of a run -----------------------------------------------------------------


async def test_the_retries_of_a_run_are_listed_by_retry_of(client: httpx.AsyncClient) -> None:
    counting.failing.add("flaky")
    workflow_id = await create_workflow(client, FLAKY_CHAIN)
    original = await finish(client, workflow_id)
    first, _ = await retried(client, original)
    second, _ = await retried(client, original)
    await retried(client, first["execution_id"])

    page = (await client.get(f"/agents/executions?retry_of={original}")).json()
    plain = (await client.get(f"/agents/executions/{original}")).json()

    assert [i["execution_id"] for i in page["items"]] == [
        second["execution_id"],
        first["execution_id"],
    ]
    assert page["total"] == 2 and all(i["retry_of"] == original for i in page["items"])
    assert plain["retry_of"] is None and "retry_of" not in plain["links"]
    assert plain["links"]["retry"] == f"/agents/executions/{original}/retry"
    for item in page["items"]:
        assert item["links"]["retry_of"] == f"/agents/executions/{original}"
    events = [m for m in await logged_messages(client, original) if m["type"] in NODE_EVENTS]
    assert events  # the original's log is left as it was
