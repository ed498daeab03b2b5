"""What a retry reuses and where it starts (app/executions/retry.py), from hand-made records
of finished runs: no event loop, no store. The runs themselves go through the app in
tests/asgi/test_retry.py."""

from __future__ import annotations

from typing import Any

import pytest

from app.errors import ValidationFailed
from app.executions.retry import default_from_node, plan_retry, prepare, run_state
from app.model.records import ExecutionRecord, RetryPlan
from app.model.status import ExecutionStatus
from app.workflows.builtin_nodes import builtin_registry
from app.workflows.compiler import CompiledWorkflow, compile_workflow
from app.workflows.schema import parse_workflow
from support.engine import node, workflow

S = ExecutionStatus
REGISTRY = builtin_registry()

PARALLEL = workflow(
    [node("Start"), node("A", "set"), node("B", "set"), node("C", "set")],
    [("Start", 0, "A"), ("Start", 0, "B"), ("B", 0, "C")],
)
SWITCH = workflow(
    [
        node("Start"),
        node("Route", "switch", field="kind", cases=["x", "y"]),
        node("X", "set"),
        node("Y", "set"),
        node("Other", "set"),
        node("End", "set"),
    ],
    [
        ("Start", 0, "Route"),
        ("Route", 0, "X"),
        ("Route", 1, "Y"),
        ("Route", 2, "Other"),
        ("Y", 0, "End"),
    ],
)


def compiled(body: dict[str, Any]) -> CompiledWorkflow:
    parsed = parse_workflow(body, REGISTRY, python_modules=())
    return compile_workflow(
        parsed, REGISTRY, checkpointer=None, default_recursion_limit=25, workflow_id="wf"
    )


def finished(
    body: dict[str, Any],
    done: dict[str, int],
    *,
    status: S = S.ERROR,
    others: dict[str, str] | None = None,
) -> ExecutionRecord:
    """A finished run of ``body`` whose ``done`` nodes succeeded in that order, each on the
    output given; ``others``: the status other nodes ended with (default pending)."""
    run_data: dict[str, list[dict[str, Any]]] = {}
    outputs: dict[str, list[Any]] = {}
    for index, (name, output) in enumerate(done.items()):
        run_data[name] = [
            {"status": "success", "start_time": index, "execution_index": index}
            | {"execution_time": 1, "item_count": {}}
        ]
        main = [
            [{"json": {name: index}, "pairedItem": {"item": 0}}] if o == output else []
            for o in range(output + 1)
        ]
        outputs[name] = [{"main": main}]
    nodes = {n["name"]: {"status": "pending", "runs": 0} for n in body["nodes"]}
    nodes |= {name: {"status": "success", "runs": 1} for name in done}
    for at, (name, node_status) in enumerate((others or {}).items()):
        nodes[name] = {"status": node_status, "runs": 1, "started_at": 100 + at}
    failed = next((n for n, s in (others or {}).items() if s == "error"), None)
    return ExecutionRecord(
        id="orig",
        workflow_id="wf",
        workflow_name="wf",
        created_at=0,
        status=status,
        workflow=body,
        error={"message": "boom", "node": failed, "type": "T"} if failed else None,
        graph_state={"nodes": nodes, "completed_nodes": list(done), "errors": []},
        run_data=run_data,
        outputs=outputs,
    )


def test_a_sibling_branch_cut_short_by_the_failure_starts_with_the_retried_node() -> None:
    original = finished(PARALLEL, {"Start": 0, "B": 0}, others={"A": "error"})

    plan = plan_retry(original, compiled(PARALLEL), default_from_node(original))

    assert plan == RetryPlan("A", ["Start", "B"], ["A", "C"])


def test_a_retry_inside_a_switch_branch_starts_on_the_output_the_original_took() -> None:
    original = finished(SWITCH, {"Start": 0, "Route": 1}, others={"Y": "error"})

    plan = plan_retry(original, compiled(SWITCH), "Y")

    assert plan == RetryPlan("Y", ["Start", "Route"], ["Y"])


def test_a_retry_from_the_entry_or_of_a_success_run_reuses_nothing() -> None:
    success = finished(PARALLEL, {"Start": 0, "A": 0, "B": 0, "C": 0}, status=S.SUCCESS)

    assert default_from_node(success) is None
    assert plan_retry(success, compiled(PARALLEL), None) is None
    assert plan_retry(success, compiled(PARALLEL), "Start") is None
    assert plan_retry(success, compiled(PARALLEL), "B") == RetryPlan("B", ["Start", "A"], ["B"])


def test_a_run_canceled_between_nodes_goes_on_from_the_nodes_it_had_not_begun() -> None:
    original = finished(PARALLEL, {"Start": 0, "A": 0, "B": 0}, status=S.CANCELED)

    assert default_from_node(original) is None
    assert plan_retry(original, compiled(PARALLEL), None) == RetryPlan(
        None, ["Start", "A", "B"], ["C"]
    )


def test_a_crashed_run_is_retried_from_the_earliest_node_that_did_not_finish() -> None:
    original = finished(
        PARALLEL, {"Start": 0}, status=S.CRASHED, others={"B": "canceled", "A": "canceled"}
    )

    assert default_from_node(original) == "B"


def test_the_new_record_carries_the_reused_results_with_state_replacing_them() -> None:
    original = finished(SWITCH, {"Start": 0, "Route": 1}, others={"Y": "error"})
    record = ExecutionRecord(id="new", workflow_id="wf", workflow_name="wf", created_at=1)

    prepare(record, original, compiled(SWITCH), from_node=None, state={"Route": {"kind": "z"}})

    assert record.retry_of == "orig" and record.retry == RetryPlan("Y", ["Start", "Route"], ["Y"])
    assert record.outputs["Route"] == [
        {"main": [[], [{"json": {"kind": "z"}, "pairedItem": {"item": 0}}]]}
    ]
    assert record.next_execution_index == 2
    assert record.graph_state["completed_nodes"] == ["Start", "Route"]
    assert record.graph_state["nodes"]["Y"]["status"] == "pending"
    assert run_state(record) == {
        "agent_results": {"Start": {"Start": 0}, "Route": {"kind": "z"}},
        "completed_nodes": ["Start", "Route"],
        "routes": {"Start": 0, "Route": 1},
    }


@pytest.mark.parametrize(
    ("from_node", "state", "path"),
    [("Nowhere", {}, "from_node"), ("X", {}, "from_node"), ("Y", {"End": {}}, "state.End")],
)
def test_what_a_retry_cannot_use_is_refused_naming_the_field(
    from_node: str, state: dict[str, Any], path: str
) -> None:
    original = finished(SWITCH, {"Start": 0, "Route": 1}, others={"Y": "error"})
    record = ExecutionRecord(id="new", workflow_id="wf", workflow_name="wf", created_at=1)

    with pytest.raises(ValidationFailed) as refused:
        prepare(record, original, compiled(SWITCH), from_node=from_node, state=state)

    assert [p["path"] for p in refused.value.details] == [path]
