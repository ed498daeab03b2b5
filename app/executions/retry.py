"""Retries (SPEC §9): what part of a finished run a retry runs again and what it reuses,
the way n8n's partial executions reuse the run data of the nodes before the one retried.

A retry from node ``F`` runs ``F`` and every node downstream of it again. Every other node
that succeeded in the original run is *reused*: it does not run, and its recorded results
seed the new run's state, run data and graph state. The new run starts at ``F`` and at every
other node the reused results trigger (a sibling branch cut short when ``F`` failed), so it
goes on as the original would have from there, through ``if``/``switch`` outputs the
original took and into joins whose reused inputs count as arrived. No LangGraph checkpoint
is needed: the state is rebuilt from the recorded outputs.
"""

from __future__ import annotations

import collections
from typing import Any

from app.errors import RetryFromNodeUnsupported, ValidationFailed, problem
from app.executions.graph_state import PENDING, GraphState
from app.executions.run_data import output_index
from app.model.records import ExecutionRecord, JsonObject, RetryPlan
from app.model.status import ExecutionStatus
from app.workflows.compiler import CompiledWorkflow
from app.workflows.edges import join_sources
from app.workflows.schema import reachable


def default_from_node(original: ExecutionRecord) -> str | None:
    """The node a retry starts from when none is named: the failed node of an ``error`` run;
    else the earliest started node that did not finish (``canceled``, ``crashed``); None
    when there is none, and for a ``success`` run (the whole workflow runs again)."""
    if original.status is ExecutionStatus.SUCCESS:
        return None
    failed = (original.error or {}).get("node")
    if failed:
        return str(failed)
    unfinished = [
        (node.get("started_at", 0), name)
        for name, node in original.graph_state.get("nodes", {}).items()
        if node.get("status") not in (PENDING, "success")
    ]
    return min(unfinished)[1] if unfinished else None


def prepare(
    record: ExecutionRecord,
    original: ExecutionRecord,
    compiled: CompiledWorkflow | None,
    *,
    from_node: str | None,
    state: dict[str, JsonObject],
) -> None:
    """Make the new ``record`` a retry of ``original`` from ``from_node`` (its default when
    None) on ``compiled``, its workflow (None for a registered graph, retried from its
    start only), with ``state`` replacing reused nodes' results.

    Raises :class:`ValidationFailed` naming the field for a ``from_node`` not in the workflow
    or that did not run in ``original``, a reused node the workflow no longer has (or has
    with another type), or a ``state`` entry for a node the retry does not reuse."""
    record.retry_of = original.id
    if compiled is None:
        if from_node is not None:
            raise RetryFromNodeUnsupported(
                "a registered graph is retried from its start only",
                [problem("from_node", "a registered Python graph has no node to start from")],
            )
        _check_state(state, [])
        return
    if from_node is None:
        from_node = default_from_node(original)
    if from_node is not None:
        _check_from_node(original, compiled, from_node)
    plan = plan_retry(original, compiled, from_node)
    _check_state(state, plan.reused if plan else [])
    if plan is not None:
        _reuse(record, original, compiled, plan, state)


def plan_retry(
    original: ExecutionRecord, compiled: CompiledWorkflow, from_node: str | None
) -> RetryPlan | None:
    """What a retry of ``original`` from ``from_node`` reuses and where it starts; None
    when it reuses nothing (the whole workflow runs)."""
    rerun = _downstream(compiled, from_node) if from_node else set()
    candidates = [name for name in _succeeded(original) if name not in rerun]
    _check_unchanged(original, compiled, candidates)
    reused = set(candidates)
    routes = {name: output_index(original.outputs[name][-1]) for name in candidates}
    joins = join_sources(compiled.nodes, compiled.predecessors)

    def triggered(name: str) -> bool:
        joined = joins.get(name, [])
        if joined and reused.issuperset(joined):
            return True
        incoming = compiled.predecessors[name]
        return any(s in reused and s not in joined and routes[s] == i for s, i in incoming)

    frontier = [name for name in compiled.nodes if name not in reused and triggered(name)]
    starts = list(dict.fromkeys([from_node, *frontier] if from_node else frontier))
    if not candidates or not starts:
        return None
    return RetryPlan(from_node, candidates, starts)


def run_state(record: ExecutionRecord) -> dict[str, Any] | None:
    """The run state a retry starts from besides its input (``agent_results``,
    ``completed_nodes``, ``routes`` of its reused nodes); None for a run that reuses
    nothing."""
    if record.retry is None:
        return None
    results: dict[str, Any] = {}
    routes: dict[str, int] = {}
    for name in record.retry.reused:
        output = record.outputs[name][-1]
        routes[name] = output_index(output)
        results[name] = output["main"][routes[name]][0]["json"]
    return {
        "agent_results": results,
        "completed_nodes": list(record.retry.reused),
        "routes": routes,
    }


# ---- helpers ---------------------------------------------------------------------------


def _succeeded(original: ExecutionRecord) -> list[str]:
    """The nodes that succeeded in ``original`` with their results recorded, in the order
    they last ran."""
    nodes = original.graph_state.get("nodes", {})
    done = [
        name
        for name, runs in original.run_data.items()
        if runs and nodes.get(name, {}).get("status") == "success" and original.outputs.get(name)
    ]
    return sorted(done, key=lambda name: original.run_data[name][-1]["execution_index"])


def _downstream(compiled: CompiledWorkflow, start: str) -> set[str]:
    """``start`` and every node reachable from it, whatever output a node takes."""
    successors: dict[str, list[str]] = collections.defaultdict(list)
    for target, incoming in compiled.predecessors.items():
        for source, _ in incoming:
            successors[source].append(target)
    return reachable(start, successors)


def _check_from_node(original: ExecutionRecord, compiled: CompiledWorkflow, name: str) -> None:
    if name not in compiled.nodes:
        raise ValidationFailed(
            "from_node is not a node of the workflow",
            [problem("from_node", f"the workflow has no node {name!r}")],
        )
    status = original.graph_state.get("nodes", {}).get(name, {}).get("status", PENDING)
    if status == PENDING and name not in original.run_data:
        raise ValidationFailed(
            "from_node did not run in the original execution",
            [problem("from_node", f"node {name!r} did not run in execution {original.id}")],
        )


def _check_unchanged(
    original: ExecutionRecord, compiled: CompiledWorkflow, reused: list[str]
) -> None:
    """Every node whose result is reused is still in the workflow, with the same type."""
    types = {node.get("name"): node.get("type") for node in original.workflow.get("nodes", [])}
    problems = [
        problem("workflow", f"node {name!r} is no longer in the workflow")
        if name not in compiled.nodes
        else problem("workflow", f"node {name!r} is now of type {compiled.nodes[name].type!r}")
        for name in reused
        if name not in compiled.nodes or compiled.nodes[name].type != types.get(name)
    ]
    if problems:
        raise ValidationFailed("the workflow's nodes no longer match the execution", problems)


def _check_state(state: dict[str, JsonObject], reused: list[str]) -> None:
    problems = [
        problem(f"state.{name}", "not a node whose result this retry reuses")
        for name in state
        if name not in reused
    ]
    if problems:
        raise ValidationFailed("state names nodes the retry does not reuse", problems)


def _reuse(
    record: ExecutionRecord,
    original: ExecutionRecord,
    compiled: CompiledWorkflow,
    plan: RetryPlan,
    state: dict[str, JsonObject],
) -> None:
    """Copy the reused nodes' runs and outputs into ``record`` (``state`` replacing their
    last results), its graph state showing them ``success``."""
    graph = GraphState(compiled.nodes)
    for name in plan.reused:
        record.run_data[name] = [dict(run) for run in original.run_data[name]]
        outputs = list(original.outputs[name])
        if name in state:
            outputs[-1] = _replaced(outputs[-1], state[name])
        record.outputs[name] = outputs
        for run in record.run_data[name]:
            graph.mark_node_finished(name, "success", run["execution_time"])
    record.graph_state = graph.to_frontend_format()
    indexes = [run["execution_index"] for runs in record.run_data.values() for run in runs]
    record.next_execution_index = max(indexes) + 1
    record.retry = plan


def _replaced(output: JsonObject, result: JsonObject) -> JsonObject:
    """A recorded ``{"main": [...]}`` output with its item on the output it took replaced."""
    main = [list(items) for items in output.get("main", [])]
    index = output_index(output)
    while len(main) <= index:
        main.append([])
    main[index] = [{"json": result, "pairedItem": {"item": 0}}]
    return {"main": main}
