"""GraphState: what a canvas paints, node by node."""

from __future__ import annotations

from app.executions.graph_state import GraphState


def test_a_new_state_has_every_node_pending() -> None:
    state = GraphState(["A", "B"]).to_frontend_format()
    assert state == {
        "nodes": {"A": {"status": "pending", "runs": 0}, "B": {"status": "pending", "runs": 0}},
        "completed_nodes": [],
        "running_nodes": [],
        "errors": [],
    }


def test_started_then_finished_nodes_move_from_running_to_completed() -> None:
    state = GraphState(["A", "B"])
    state.mark_node_started("A", 1000)
    assert state.to_frontend_format()["running_nodes"] == ["A"]
    state.mark_node_finished("A", "success", 7)
    view = state.to_frontend_format()
    assert view["running_nodes"] == []
    assert view["completed_nodes"] == ["A"]
    assert view["nodes"]["A"] == {
        "status": "success",
        "runs": 1,
        "started_at": 1000,
        "execution_time_ms": 7,
    }


def test_a_failed_node_counts_its_run_and_records_the_error() -> None:
    state = GraphState(["A"])
    state.mark_node_started("A", 1)
    state.mark_error("A", "boom", "ValueError")
    view = state.to_frontend_format()
    assert view["nodes"]["A"]["status"] == "error"
    assert view["nodes"]["A"]["runs"] == 1
    assert view["errors"] == [{"node": "A", "message": "boom", "type": "ValueError"}]
    assert view["running_nodes"] == []


def test_canceling_marks_running_and_waiting_nodes_only() -> None:
    state = GraphState(["A", "B", "C"])
    state.mark_node_started("A", 1)
    state.mark_node_finished("A", "success", 1)
    state.mark_node_started("B", 2)
    state.mark_node_started("C", 2)
    state.mark_node_finished("C", "waiting", 1)
    state.mark_canceled()
    nodes = state.to_frontend_format()["nodes"]
    assert [nodes[n]["status"] for n in "ABC"] == ["success", "canceled", "canceled"]


def test_the_frontend_format_round_trips() -> None:
    state = GraphState(["A", "B"])
    state.mark_node_started("A", 5)
    state.mark_node_finished("A", "waiting", 3)
    view = state.to_frontend_format()
    assert GraphState.from_frontend_format(view).to_frontend_format() == view
    assert GraphState.from_frontend_format(view).status_of("A") == "waiting"


def test_views_are_copies_not_live_state() -> None:
    state = GraphState(["A"])
    view = state.to_frontend_format()
    state.mark_node_started("A", 1)
    assert view["nodes"]["A"]["status"] == "pending"
