"""n8n connections as LangGraph edges (SPEC §2): fan-out to every target of a one-output
node, a conditional edge for the outputs of ``if``/``switch``, and one join edge for a
fan-in node fed by several one-output nodes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.graph import END, StateGraph

from app.workflows.node_types import NodeInfo, RunState
from app.workflows.schema import Workflow


def add_edges(
    builder: StateGraph[RunState, Any, RunState, RunState],
    workflow: Workflow,
    nodes: dict[str, NodeInfo],
    joins: dict[str, list[str]],
) -> None:
    """Add the edges of ``workflow``'s connections to ``builder``; ``joins``: fan-in node ->
    the sources its join edge waits for."""
    targets: dict[str, list[list[str]]] = {
        name: [[] for _ in range(info.outputs)] for name, info in nodes.items()
    }
    for source, index, target in workflow.edges():
        if target not in targets[source][index]:
            targets[source][index].append(target)
    for name, outputs in targets.items():
        if nodes[name].outputs > 1:
            reachable = [*dict.fromkeys(t for output in outputs for t in output), END]
            builder.add_conditional_edges(name, _router(name, outputs), reachable)
            continue
        for target in outputs[0]:
            if target not in joins:
                builder.add_edge(name, target)
    for target, sources in joins.items():
        if sources:
            builder.add_edge(sources if len(sources) > 1 else sources[0], target)


def join_sources(
    nodes: dict[str, NodeInfo], predecessors: dict[str, list[tuple[str, int]]]
) -> dict[str, list[str]]:
    """Fan-in node -> its one-output sources (at least two, in node order: the LangGraph join
    edge's channel is named after them, and paused runs' checkpoints hold that name)."""
    joins: dict[str, list[str]] = {}
    for target, incoming in predecessors.items():
        if nodes[target].fan_in:
            found = {source for source, _ in incoming if nodes[source].outputs == 1}
            if len(found) > 1:
                joins[target] = [name for name in nodes if name in found]
    return joins


def run_joins(
    nodes: dict[str, NodeInfo],
    predecessors: dict[str, list[tuple[str, int]]],
    reused: frozenset[str],
) -> dict[str, list[str]]:
    """The joins of a run: a reused source has arrived already, so it is not waited for."""
    return {
        target: [source for source in sources if source not in reused]
        for target, sources in join_sources(nodes, predecessors).items()
    }


def _router(name: str, outputs: list[list[str]]) -> Callable[[RunState], list[str] | str]:
    """Route to the targets of the output ``name`` took (``state["routes"][name]``), or END."""

    def route(state: RunState) -> list[str] | str:
        return outputs[state["routes"][name]] or END

    return route
